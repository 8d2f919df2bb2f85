"""Twilio objects -> our records. With ``transport.py``, the only modules that import twilio.

``TwilioGateway`` implements ``models.Gateway`` on the official library's async client, over
``transport.Transport``. Every answer is checked for the shape Twilio documents before it
becomes a record: an answer that is not understood (not JSON, too deep, a field of the wrong
type, a row that is not an object) is a ``BadResponse``, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from twilio.rest import Client

from . import __version__
from .clock import TwilioClock
from .decide import is_sid, read_attributes
from .errors import BadResponse, StuckTasksError
from .models import (
    CallFacts,
    ChannelFacts,
    ConferenceFacts,
    Conferences,
    ConversationFacts,
    Named,
    ParticipantFacts,
    Participants,
    Reason,
    Refs,
    TaskPage,
    TaskRecord,
    Workspace,
    Written,
)
from .pacing import header
from .ratecontrol import AdaptiveLimiter, Metrics, Stop
from .settings import Connection
from .transport import Transport

T = TypeVar("T")
TASK_STATUSES = frozenset({"pending", "reserved", "assigned", "canceled", "completed", "wrapping"})


def _shape(what: str) -> BadResponse:
    return BadResponse(f"Twilio's answer ({what}) is not of the shape Twilio documents")


def _text(value: object, what: str, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _shape(what)
    return value


def _sid(value: object, prefix: str, what: str) -> str:
    if not is_sid(value, prefix):
        raise _shape(f"{what} SID")
    assert isinstance(value, str)
    return value


class _HasSid(Protocol):
    @property
    def sid(self) -> str: ...


S = TypeVar("S", bound=_HasSid)


def _same(found: S, asked: str, what: str) -> S:
    """An answer about another resource than the one asked for (a proxy replaying an earlier
    answer, say) is not evidence of anything."""
    if found.sid != asked:
        raise BadResponse(f"Twilio's answer for {what} {asked} was about {found.sid}")
    return found


def _when(value: object) -> datetime | None:
    """twilio parses timestamps it understands; anything else is treated as absent."""
    return value if isinstance(value, datetime) and value.tzinfo is not None else None


def task_record(instance: Any, etag: str | None = None, *, attributes_known: bool) -> TaskRecord:
    """A twilio TaskInstance as our record, reading its attributes when we have them."""
    status = _text(instance.assignment_status, "task status", optional=False)
    if status not in TASK_STATUSES:
        raise _shape("task status")
    found = read_attributes(instance.attributes) if attributes_known else None
    age = instance.age
    return TaskRecord(
        sid=_sid(instance.sid, "WT", "task"),
        status=status,
        channel=_text(instance.task_channel_unique_name, "task channel") or "",
        queue=_text(instance.task_queue_friendly_name, "task queue"),
        date_created=_when(instance.date_created),
        date_updated=_when(instance.date_updated),
        age=age if isinstance(age, int) and not isinstance(age, bool) else None,
        refs=found if isinstance(found, Refs) else None,
        attributes_problem=found if isinstance(found, Reason) else None,
        etag=etag or None,  # an empty ETag is no ETag: never sent as If-Match ""
        twilio_reason=_text(instance.reason, "task reason"),
    )


def _conference(c: Any) -> ConferenceFacts:
    return ConferenceFacts(
        _sid(c.sid, "CF", "conference"),
        _text(c.status, "conference status") or "",
        _when(c.date_updated),
    )


class TwilioGateway:
    """Async access to the few Twilio resources the tool needs, as our own records."""

    def __init__(
        self,
        connection: Connection,
        *,
        limiter: AdaptiveLimiter,
        metrics: Metrics,
        clock: TwilioClock,
        stop: Stop,
    ) -> None:
        self.connection = connection
        self._transport = Transport(
            connection, limiter=limiter, metrics=metrics, clock=clock, stop=stop
        )
        creds = connection.credentials
        self._client = Client(
            username=creds.username,
            password=creds.password,
            account_sid=creds.account_sid,
            region=connection.region,
            edge=connection.edge,
            http_client=self._transport,
            environment={"_": ""},  # never let twilio read TWILIO_* from os.environ behind us
            user_agent_extensions=[f"stuck-tasks/{__version__}"],
        )

    def __repr__(self) -> str:
        return f"TwilioGateway(account_sid={self.connection.credentials.account_sid!r})"

    async def aclose(self) -> None:
        await self._transport.close()

    async def _call(self, op: Callable[[], Awaitable[Any]], convert: Callable[[Any], T]) -> T:
        """Make one request through twilio and convert its answer; any surprise is BadResponse.

        twilio parses the JSON and builds its instances from whatever came back, so a hostile
        answer surfaces there as any exception at all (ValueError, KeyError, AttributeError,
        RecursionError for a 100,000-deep document, ...).
        """
        try:
            return convert(await op())
        except StuckTasksError:
            raise
        except json.JSONDecodeError as exc:
            raise BadResponse(
                "Twilio's answer is not JSON (a proxy's page, or a wrong --base-url?)"
            ) from exc
        except Exception as exc:
            raise BadResponse(f"Twilio's answer could not be read ({type(exc).__name__})") from exc

    def _workspaces(self) -> Any:
        return self._client.taskrouter.v1.workspaces

    def _account(self) -> Any:
        return self._client.api.v2010.accounts(self.connection.credentials.account_sid)

    # ------------------------------------------------------------ set-up

    async def account_name(self, sid: str) -> str:
        """The account's friendly name (the body also holds the auth token: read one field)."""
        return await self._call(
            self._client.api.v2010.accounts(sid).fetch_async,
            lambda a: _text(a.friendly_name, "account name") or "",
        )

    async def workspaces(self, friendly_name: str | None = None) -> list[Workspace]:
        kwargs: dict[str, Any] = {"page_size": 1000}
        if friendly_name is not None:
            kwargs["friendly_name"] = friendly_name
        return await self._every_page(
            self._workspaces(), lambda: self._workspaces().page_async(**kwargs), _workspace
        )

    async def workspace(self, sid: str) -> Workspace:
        return await self._call(self._workspaces()(sid).fetch_async, _workspace)

    async def task_queues(self, workspace_sid: str) -> list[Named]:
        queues = self._workspaces()(workspace_sid).task_queues
        return await self._every_page(
            queues, lambda: queues.page_async(page_size=1000), lambda q: _named(q, "WQ")
        )

    async def workflows(self, workspace_sid: str) -> list[Named]:
        flows = self._workspaces()(workspace_sid).workflows
        return await self._every_page(
            flows, lambda: flows.page_async(page_size=1000), lambda w: _named(w, "WW")
        )

    async def _every_page(
        self, listing: Any, first: Callable[[], Awaitable[Any]], convert: Callable[[Any], T]
    ) -> list[T]:
        """Every item of a (short) list, page by page; a page URL that repeats is refused.

        twilio's own ``list_async`` would follow a ``next_page_url`` that loops for ever."""
        found: list[T] = []
        page = await self._call(first, lambda p: p)
        seen: set[str] = set()
        while True:
            items, url = await self._call(
                _ready(page),
                lambda p: ([convert(x) for x in p], _text(p.next_page_url, "next page URL")),
            )
            found.extend(items)
            if not url:
                return found
            if url in seen or len(seen) >= 100:
                raise BadResponse("Twilio's list named a page it had already given (a loop)")
            seen.add(url)
            page = await self._call(partial(listing.get_page_async, url), lambda p: p)

    # ------------------------------------------------------------ tasks

    async def first_task_page(
        self, workspace_sid: str, *, statuses: tuple[str, ...], filters: Mapping[str, str]
    ) -> TaskPage:
        tasks = self._workspaces()(workspace_sid).tasks
        return await self._call(
            lambda: tasks.page_async(assignment_status=list(statuses), page_size=1000, **filters),
            _task_page,
        )

    async def next_task_page(self, workspace_sid: str, url: str) -> TaskPage:
        tasks = self._workspaces()(workspace_sid).tasks
        return await self._call(lambda: tasks.get_page_async(url), _task_page)

    async def fetch_task(self, workspace_sid: str, sid: str) -> TaskRecord:
        """Fetch one task with its attributes, its ETag and its reason."""
        context = self._workspaces()(workspace_sid).tasks(sid)

        def convert(answer: Any) -> TaskRecord:
            record = task_record(answer.data, header(answer.headers, "ETag"), attributes_known=True)
            return _same(record, sid, "task")

        return await self._call(context.fetch_with_http_info_async, convert)

    async def update_task(
        self, workspace_sid: str, sid: str, *, status: str, reason: str, if_match: str | None
    ) -> Written:
        context = self._workspaces()(workspace_sid).tasks(sid)
        kwargs: dict[str, Any] = {"assignment_status": status, "reason": reason}
        if if_match:
            kwargs["if_match"] = if_match
        return await self._call(
            lambda: context.update_with_http_info_async(**kwargs),
            lambda a: Written(
                _text(a.data.assignment_status, "task status", optional=False) or "",
                header(a.headers, "ETag") or None,
            ),
        )

    # ------------------------------------------------------------ voice evidence

    async def fetch_call(self, sid: str) -> CallFacts:
        def convert(c: Any) -> CallFacts:
            found = CallFacts(
                sid=_sid(c.sid, "CA", "call"),
                status=_text(c.status, "call status") or "",
                end_time=_when(c.end_time),
                date_updated=_when(c.date_updated),
            )
            return _same(found, sid, "call")

        return await self._call(self._account().calls(sid).fetch_async, convert)

    async def fetch_conference(self, sid: str) -> ConferenceFacts:
        return await self._call(
            self._account().conferences(sid).fetch_async,
            lambda c: _same(_conference(c), sid, "conference"),
        )

    async def conferences_named(self, name: str, *, status: str) -> Conferences:
        """Conferences whose FriendlyName is ``name`` (TaskRouter uses the task SID) in one
        status: since 2026-09-30 a list without ``Status`` finds in-progress ones only."""
        conferences = self._account().conferences

        def convert(page: Any) -> Conferences:
            found = []
            for c in page:
                if c.friendly_name != name or c.status != status:
                    raise BadResponse(
                        f"Twilio's list of {status} conferences named {name} held another one"
                    )
                found.append(_conference(c))
            return Conferences(tuple(found))

        return await self._call(
            lambda: conferences.page_async(friendly_name=name, status=status, page_size=50),
            convert,
        )

    # ------------------------------------------------------------ Flex Conversations

    def _channel(self, interaction_sid: str, channel_sid: str) -> Any:
        return self._client.flex_api.v1.interaction(interaction_sid).channels(channel_sid)

    async def fetch_channel(self, interaction_sid: str, channel_sid: str) -> ChannelFacts:
        return await self._call(
            self._channel(interaction_sid, channel_sid).fetch_async,
            lambda c: _same(
                ChannelFacts(_sid(c.sid, "UO", "channel"), _text(c.status, "channel status") or ""),
                channel_sid,
                "interaction channel",
            ),
        )

    async def channel_participants(self, interaction_sid: str, channel_sid: str) -> Participants:
        participants = self._channel(interaction_sid, channel_sid).participants

        def convert(page: Any) -> Participants:
            found = []
            for p in page:
                if p.channel_sid not in (None, channel_sid):
                    raise BadResponse(f"Twilio's participants of {channel_sid} held another's")
                found.append(_participant(p))
            return Participants(tuple(found))

        return await self._call(lambda: participants.page_async(page_size=100), convert)

    async def fetch_conversation(self, sid: str) -> ConversationFacts:
        return await self._call(
            self._client.conversations.v1.conversations(sid).fetch_async,
            lambda c: _same(
                ConversationFacts(
                    _sid(c.sid, "CH", "conversation"),
                    _text(c.state, "conversation state") or "",
                    _when(c.date_updated),
                ),
                sid,
                "conversation",
            ),
        )

    async def close_participant(
        self, interaction_sid: str, channel_sid: str, participant_sid: str
    ) -> None:
        """Close the agent's participant: Twilio completes its task, the channel stays open."""
        participant = self._channel(interaction_sid, channel_sid).participants(participant_sid)
        await self._call(lambda: participant.update_async(status="closed"), lambda _: None)

    async def close_channel(self, interaction_sid: str, channel_sid: str) -> None:
        """Close the channel and, with Routing ``closed``, its tasks (not just wrap them up)."""
        channel = self._channel(interaction_sid, channel_sid)
        await self._call(
            lambda: channel.update_async(status="closed", routing={"status": "closed"}),
            lambda _: None,
        )


def _ready(value: T) -> Callable[[], Awaitable[T]]:
    async def answer() -> T:
        return value

    return answer


def _workspace(ws: Any) -> Workspace:
    return Workspace(
        _sid(ws.sid, "WS", "workspace"),
        _text(ws.friendly_name, "workspace name") or "",
        _sid(ws.account_sid, "AC", "workspace account"),
    )


def _named(item: Any, prefix: str) -> Named:
    return Named(_sid(item.sid, prefix, "resource"), _text(item.friendly_name, "name") or "")


def _task_page(page: Any) -> TaskPage:
    # Attributes are null in list results per the spec's prose; read them when present.
    records = tuple(task_record(t, attributes_known=t.attributes is not None) for t in page)
    return TaskPage(records, _text(page.next_page_url, "next page URL"))


def _participant(p: Any) -> ParticipantFacts:
    routing = p.routing_properties
    if routing is not None and not isinstance(routing, dict):
        raise _shape("participant routing properties")
    sids = tuple(str(v) for v in (routing or {}).values() if isinstance(v, str))
    return ParticipantFacts(
        _sid(p.sid, "UT", "participant"), _text(p.type, "participant type") or "", sids
    )


def gateway_factory(
    connection: Connection,
    *,
    limiter: AdaptiveLimiter,
    metrics: Metrics,
    clock: TwilioClock,
    stop: Stop,
) -> Callable[[], Any]:
    """A factory of gateways: each phase of a run (each event loop) opens its own."""

    @asynccontextmanager
    async def open_gateway() -> Any:
        gateway = TwilioGateway(
            connection, limiter=limiter, metrics=metrics, clock=clock, stop=stop
        )
        try:
            yield gateway
        finally:
            await gateway.aclose()

    return open_gateway
