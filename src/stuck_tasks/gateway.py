"""Twilio objects -> our records. With ``transport.py``, the only modules that import twilio.

``TwilioGateway`` implements ``models.Gateway`` on the official library's async client, over
``transport.Transport``. Every answer is checked for the shape Twilio documents before it
becomes a record: an answer that is not understood (not JSON, too deep, a field of the wrong
type, a row that is not an object) is a ``BadResponse``, never a traceback.

The requests a run makes per task (task list pages, task fetches and updates, calls,
conferences) and the set-up (account, workspaces, task queues, workflows) go through twilio's
``Version`` layer (``fetch_with_response_info_async``, ``update_with_response_info_async``,
``page_async``) and read the JSON payload it parsed. The generated instance classes would parse
every timestamp of every row with ``strptime`` first: a tenth of the tool's CPU per request, and
the CPU per request is what bounds a large run. Their packages are not even imported (0.15 s of
every run's start-up): the two ``Version`` objects are made from twilio's own ``Domain`` and
``Version`` classes, as its ``TaskrouterBase``/``V1`` and ``ApiBase``/``V2010`` make them. The
Flex requests (``--channels messaging``) use the instance classes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar

from twilio.base.domain import Domain
from twilio.base.version import Version
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
# The headers twilio's generated code sends (fetches; lists and updates). Always copied:
# twilio adds its own (User-Agent, ...) to the dict it is given.
_JSON = {"Accept": "application/json"}
_FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
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


def _object(payload: object, what: str) -> Mapping[str, Any]:
    if not isinstance(payload, dict):
        raise _shape(what)
    return payload


_ISO_SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", re.ASCII)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
# "Tue, 01 Dec 2026 12:00:00 +0000": read without the email parser, in half its time. (Years
# before 1000 go to the email parser, which reads "0049" as 2049.)
_RFC2822_UTC = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) (" + "|".join(_MONTHS) + r") ([1-9]\d{3}) "
    r"(\d\d):(\d\d):(\d\d) \+0000",
    re.ASCII,
)


def _iso(value: object, what: str) -> datetime | None:
    """A TaskRouter timestamp, ``2026-12-01T12:00:00Z``: the one form twilio's own parser
    accepts. Other text is treated as absent; a value that is not text is not Twilio's shape."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _shape(what)
    if not _ISO_SECONDS.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value[:-1]).replace(tzinfo=UTC)
    except ValueError:  # 2026-13-45T...: the right form, not a date
        return None


def _rfc2822(value: object, what: str) -> datetime | None:
    """A Voice API timestamp, ``Tue, 01 Dec 2026 12:00:00 +0000``, with its offset honoured.
    Other text (or ``-0000``, an unknown offset) is treated as absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _shape(what)
    exact = _RFC2822_UTC.fullmatch(value)
    if exact is not None:  # the form the Voice API sends (the email parser reads it too)
        day, month, year, hour, minute, second = exact.groups()
        try:
            return datetime(
                int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=UTC
            )
        except ValueError:
            return None  # the form, not a date (31 Nov): the email parser fails on it too
    try:
        found = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return found if found.tzinfo is not None else None


def task_record(
    data: Mapping[str, Any], etag: str | None = None, *, attributes_known: bool
) -> TaskRecord:
    """A task's JSON (a fetch, or a row of a list) as our record, reading its attributes when
    we have them."""
    status = _text(data.get("assignment_status"), "task status", optional=False)
    if status not in TASK_STATUSES:
        raise _shape("task status")
    found = read_attributes(data.get("attributes")) if attributes_known else None
    age = data.get("age")
    return TaskRecord(
        sid=_sid(data.get("sid"), "WT", "task"),
        status=status,
        channel=_text(data.get("task_channel_unique_name"), "task channel") or "",
        queue=_text(data.get("task_queue_friendly_name"), "task queue"),
        date_created=_iso(data.get("date_created"), "task date_created"),
        date_updated=_iso(data.get("date_updated"), "task date_updated"),
        age=age if isinstance(age, int) and not isinstance(age, bool) else None,
        refs=found if isinstance(found, Refs) else None,
        attributes_problem=found if isinstance(found, Reason) else None,
        etag=etag or None,  # an empty ETag is no ETag: never sent as If-Match ""
        twilio_reason=_text(data.get("reason"), "task reason"),
    )


def _conference(c: Mapping[str, Any]) -> ConferenceFacts:
    return ConferenceFacts(
        _sid(c.get("sid"), "CF", "conference"),
        _text(c.get("status"), "conference status") or "",
        _rfc2822(c.get("date_updated"), "conference date_updated"),
    )


def _page(response: Any) -> Mapping[str, Any]:
    """A list page's JSON (twilio's ``page_async`` hands back the raw answer)."""
    return _object(json.loads(response.text), "list page")


def _rows(page: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """The rows of a list page under ``key`` (``meta.key`` when the page names it, as
    TaskRouter's do), each an object."""
    meta = page.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise _shape("list page meta")
    named = (meta or {}).get("key", key)
    rows = page.get(named if isinstance(named, str) else key)
    if not isinstance(rows, list):
        raise _shape("list page rows")
    return [_object(row, "list row") for row in rows]


def _next_page_url(payload: Mapping[str, Any]) -> str | None:
    meta = payload.get("meta")
    return _text(meta.get("next_page_url"), "next page URL") if isinstance(meta, dict) else None


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
        # As twilio's TaskrouterBase/V1 and ApiBase/V2010 make them, without importing the
        # generated resource packages behind Client.taskrouter and Client.api.
        self._taskrouter = Version(Domain(self._client, "https://taskrouter.twilio.com"), "v1")
        self._api = Version(Domain(self._client, "https://api.twilio.com"), "2010-04-01")
        self._account_uri = f"/Accounts/{creds.account_sid}"

    def __repr__(self) -> str:
        return f"TwilioGateway(account_sid={self.connection.credentials.account_sid!r})"

    async def aclose(self) -> None:
        await self._transport.close()

    async def _call(self, op: Callable[[], Awaitable[Any]], convert: Callable[[Any], T]) -> T:
        """Make one request through twilio and convert its answer; any surprise is BadResponse.

        twilio (or our converter) parses the JSON and reads whatever came back, so a hostile
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

    # ------------------------------------------------------------ set-up

    async def account_name(self, sid: str) -> str:
        """The account's friendly name (the body also holds the auth token: read one field)."""
        return await self._call(
            lambda: self._api.fetch_async("GET", f"/Accounts/{sid}.json", headers=dict(_JSON)),
            lambda a: _text(_object(a, "account").get("friendly_name"), "account name") or "",
        )

    async def workspaces(self, friendly_name: str | None = None) -> list[Workspace]:
        params: dict[str, object] = {"PageSize": 1000}
        if friendly_name is not None:
            params["FriendlyName"] = friendly_name
        return await self._every_page("/Workspaces", params, "workspaces", _workspace)

    async def workspace(self, sid: str) -> Workspace:
        return await self._call(
            lambda: self._taskrouter.fetch_async("GET", f"/Workspaces/{sid}", headers=dict(_JSON)),
            lambda w: _workspace(_object(w, "workspace")),
        )

    async def task_queues(self, workspace_sid: str) -> list[Named]:
        return await self._every_page(
            f"/Workspaces/{workspace_sid}/TaskQueues",
            {"PageSize": 1000},
            "task_queues",
            lambda q: _named(q, "WQ"),
        )

    async def workflows(self, workspace_sid: str) -> list[Named]:
        return await self._every_page(
            f"/Workspaces/{workspace_sid}/Workflows",
            {"PageSize": 1000},
            "workflows",
            lambda w: _named(w, "WW"),
        )

    async def _every_page(
        self,
        uri: str,
        params: Mapping[str, object],
        key: str,
        convert: Callable[[Mapping[str, Any]], T],
    ) -> list[T]:
        """Every item of a (short) TaskRouter list, page by page; a page URL that repeats is
        refused (twilio's own ``list_async`` would follow a ``next_page_url`` that loops)."""

        def read(response: Any) -> tuple[list[T], str | None]:
            page = _page(response)
            return [convert(row) for row in _rows(page, key)], _next_page_url(page)

        found: list[T] = []
        items, url = await self._call(
            lambda: self._taskrouter.page_async("GET", uri, params=params, headers=dict(_FORM)),
            read,
        )
        seen: set[str] = set()
        while True:
            found.extend(items)
            if not url:
                return found
            if url in seen or len(seen) >= 100:
                raise BadResponse("Twilio's list named a page it had already given (a loop)")
            seen.add(url)
            items, url = await self._call(
                lambda u=url: self._client.request_async("GET", u),  # type: ignore[misc]
                read,
            )

    # ------------------------------------------------------------ tasks

    async def first_task_page(
        self, workspace_sid: str, *, statuses: tuple[str, ...], filters: Mapping[str, str]
    ) -> TaskPage:
        params = {"AssignmentStatus": list(statuses), "PageSize": 1000, **filters}
        return await self._call(
            lambda: self._taskrouter.page_async(
                "GET", f"/Workspaces/{workspace_sid}/Tasks", params=params, headers=dict(_FORM)
            ),
            _task_page,
        )

    async def next_task_page(self, workspace_sid: str, url: str) -> TaskPage:
        return await self._call(lambda: self._client.request_async("GET", url), _task_page)

    async def fetch_task(self, workspace_sid: str, sid: str) -> TaskRecord:
        """Fetch one task with its attributes, its ETag and its reason."""

        def convert(answer: tuple[Any, int, dict[str, str]]) -> TaskRecord:
            data, _, headers = answer
            record = task_record(
                _object(data, "task"), header(headers, "ETag"), attributes_known=True
            )
            return _same(record, sid, "task")

        return await self._call(
            lambda: self._taskrouter.fetch_with_response_info_async(
                "GET", f"/Workspaces/{workspace_sid}/Tasks/{sid}", headers=dict(_JSON)
            ),
            convert,
        )

    async def update_task(
        self, workspace_sid: str, sid: str, *, status: str, reason: str, if_match: str | None
    ) -> Written:
        headers = dict(_FORM)
        if if_match:
            headers["If-Match"] = if_match

        def convert(answer: tuple[Any, int, dict[str, str]]) -> Written:
            data, _, answer_headers = answer
            found = _text(
                _object(data, "task").get("assignment_status"), "task status", optional=False
            )
            return Written(found or "", header(answer_headers, "ETag") or None)

        return await self._call(
            lambda: self._taskrouter.update_with_response_info_async(
                "POST",
                f"/Workspaces/{workspace_sid}/Tasks/{sid}",
                data={"AssignmentStatus": status, "Reason": reason},
                headers=headers,
            ),
            convert,
        )

    # ------------------------------------------------------------ voice evidence

    async def fetch_call(self, sid: str) -> CallFacts:
        def convert(payload: Any) -> CallFacts:
            c = _object(payload, "call")
            found = CallFacts(
                sid=_sid(c.get("sid"), "CA", "call"),
                status=_text(c.get("status"), "call status") or "",
                end_time=_rfc2822(c.get("end_time"), "call end_time"),
                date_updated=_rfc2822(c.get("date_updated"), "call date_updated"),
            )
            return _same(found, sid, "call")

        return await self._call(
            lambda: self._api.fetch_async(
                "GET", f"{self._account_uri}/Calls/{sid}.json", headers=dict(_JSON)
            ),
            convert,
        )

    async def fetch_conference(self, sid: str) -> ConferenceFacts:
        return await self._call(
            lambda: self._api.fetch_async(
                "GET", f"{self._account_uri}/Conferences/{sid}.json", headers=dict(_JSON)
            ),
            lambda c: _same(_conference(_object(c, "conference")), sid, "conference"),
        )

    async def conferences_named(self, name: str, *, status: str) -> Conferences:
        """Conferences whose FriendlyName is ``name`` (TaskRouter uses the task SID) in one
        status: since 2026-09-30 a list without ``Status`` finds in-progress ones only."""

        def convert(response: Any) -> Conferences:
            found = []
            for c in _rows(_page(response), "conferences"):
                if c.get("friendly_name") != name or c.get("status") != status:
                    raise BadResponse(
                        f"Twilio's list of {status} conferences named {name} held another one"
                    )
                found.append(_conference(c))
            return Conferences(tuple(found))

        params = {"FriendlyName": name, "Status": status, "PageSize": 50}
        return await self._call(
            lambda: self._api.page_async(
                "GET", f"{self._account_uri}/Conferences.json", params=params, headers=dict(_FORM)
            ),
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


def _workspace(ws: Mapping[str, Any]) -> Workspace:
    return Workspace(
        _sid(ws.get("sid"), "WS", "workspace"),
        _text(ws.get("friendly_name"), "workspace name") or "",
        _sid(ws.get("account_sid"), "AC", "workspace account"),
    )


def _named(item: Mapping[str, Any], prefix: str) -> Named:
    return Named(
        _sid(item.get("sid"), prefix, "resource"), _text(item.get("friendly_name"), "name") or ""
    )


def _task_page(response: Any) -> TaskPage:
    page = _page(response)
    # Attributes are null in list results per the spec's prose; read them when present.
    records = tuple(
        task_record(t, attributes_known=t.get("attributes") is not None)
        for t in _rows(page, "tasks")
    )
    return TaskPage(records, _next_page_url(page))


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
