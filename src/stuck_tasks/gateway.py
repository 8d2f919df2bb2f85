"""The only module that imports twilio: one client, one transport, Twilio objects -> our records.

Every request goes through ``_Transport``, a twilio ``AsyncHttpClient`` on one aiohttp session:
explicit connect and read timeouts (twilio-python sets none), a connection pool sized to the
concurrency, the shared ``AdaptiveLimiter``, request counting, and typed errors raised from the
HTTP answer itself, so a failed list page is as well described as a failed fetch (twilio-python
raises a bare ``TwilioException`` there). ``base_url`` rewrites scheme and host of every URL,
next-page URLs included; that is how the emulator and ``--sandbox`` are reached. Nothing else
differs from a run against twilio.com.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from .decide import read_attributes
from .errors import ApiError, AuthError, BadResponse, NotFound, StuckTasksError, TransportError
from .models import (
    CallFacts,
    ChannelFacts,
    ConferenceFacts,
    ConversationFacts,
    Reason,
    Refs,
    TaskRecord,
)
from .ratecontrol import AdaptiveLimiter, Metrics, retry_after_seconds

_logger = logging.getLogger("stuck_tasks.http")


@dataclass(frozen=True)
class Credentials:
    """Basic-auth credentials: an account SID and auth token, or an API key and secret."""

    username: str
    password: str = field(repr=False)
    account_sid: str


@dataclass(frozen=True)
class Connection:
    """Where and how to reach Twilio."""

    credentials: Credentials
    region: str | None = None
    edge: str | None = None
    base_url: str | None = None
    timeout: float = 15.0
    pool_size: int = 20


@dataclass(frozen=True, slots=True)
class Named:
    """A resource known by SID and friendly name (account, workspace)."""

    sid: str
    friendly_name: str


@dataclass(frozen=True, slots=True)
class Written:
    """The task as the update left it."""

    status: str
    etag: str | None


def _error_from(status: int, text: str, headers: Mapping[str, str]) -> ApiError:
    code: int | None = None
    message = text.strip()[:200] or "(empty body)"
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw_code = body.get("code")
        code = raw_code if isinstance(raw_code, int) else None
        # RFC 9457 bodies (newer Twilio APIs) say "title"/"detail" instead of "message".
        message = str(body.get("message") or body.get("detail") or body.get("title") or message)
    cls = ApiError
    if status in (401, 403):
        cls = AuthError
    elif status == 404:
        cls = NotFound
    error = cls(status, code, message)
    error.retry_after = retry_after_seconds(headers)  # type: ignore[attr-defined]
    return error


def _basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode("latin-1")).decode("ascii")
    return f"Basic {token}"


_KINDS = (
    # (path shape with * for a SID, GET kind, POST kind)
    ("v1/Workspaces", "list_workspaces", None),
    ("v1/Workspaces/*", "fetch_workspace", None),
    ("v1/Workspaces/*/Tasks", "list_tasks", None),
    ("v1/Workspaces/*/Tasks/*", "fetch_task", "update_task"),
    ("2010-04-01/Accounts/*", "fetch_account", None),
    ("2010-04-01/Accounts/*/Calls/*", "fetch_call", None),
    ("2010-04-01/Accounts/*/Conferences", "list_conferences", None),
    ("2010-04-01/Accounts/*/Conferences/*", "fetch_conference", None),
    ("v1/Interactions/*/Channels/*", "fetch_channel", "update_channel"),
    ("v1/Interactions/*/Channels/*/Participants", "list_participants", None),
    ("v1/Interactions/*/Channels/*/Participants/*", None, "update_participant"),
    ("v1/Conversations/*", "fetch_conversation", None),
)


def _kind(method: str, path: str) -> str:
    parts = [p.removesuffix(".json") for p in path.split("/") if p]
    for shape, get, post in _KINDS:
        pattern = shape.split("/")
        if len(pattern) == len(parts) and all(
            a in ("*", b) for a, b in zip(pattern, parts, strict=True)
        ):
            return (post if method == "POST" else get) or "other"
    return "other"


def _transport_error(exc: BaseException, host: str, timeout: float) -> TransportError:
    """No answer: say why, and whether the request may have reached Twilio."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc)
        return TransportError(f"cannot connect to {host}: {reason}", sent=False)
    if isinstance(exc, asyncio.TimeoutError):
        return TransportError(f"no answer from {host} within {timeout:g}s", sent=True)
    return TransportError(f"connection to {host} dropped: {type(exc).__name__}", sent=True)


def _pairs(values: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Flatten twilio's params (lists mean repeated keys) into what aiohttp sends."""
    out: list[tuple[str, str]] = []
    for key, value in (values or {}).items():
        items = value if isinstance(value, list | tuple) else [value]
        out.extend((key, str(item)) for item in items)
    return out


class _Transport(AsyncHttpClient):  # type: ignore[misc]
    """twilio's async HTTP client seam, with timeouts, pooling, rate control and typed errors."""

    def __init__(self, connection: Connection, limiter: AdaptiveLimiter, metrics: Metrics) -> None:
        super().__init__(_logger, is_async=True, timeout=connection.timeout)
        self._connection = connection
        self._limiter = limiter
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        base = urlsplit(connection.base_url) if connection.base_url else None
        self._base = (base.scheme, base.netloc) if base else None
        self._proxies: dict[tuple[str, str], str | None] = {}

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = self._connection.timeout
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connection.pool_size, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
                ),
                # Not trust_env: aiohttp would then re-read the environment and ~/.netrc in a
                # worker thread on every request (most of our CPU per request), and a netrc entry
                # for the API host would clash with our own Authorization header. Proxies from
                # HTTPS_PROXY/NO_PROXY are honoured by _proxy_for, once per host.
                trust_env=False,
            )
        return self._session

    def _proxy_for(self, target: str) -> str | None:
        """The proxy the environment names for ``target`` (like twilio's sync client)."""
        parts = urlsplit(target)
        key = (parts.scheme, parts.netloc)
        if key not in self._proxies:
            proxy = getproxies().get(parts.scheme)
            if proxy and proxy_bypass(parts.hostname or ""):
                proxy = None
            self._proxies[key] = proxy or None
        return self._proxies[key]

    def _target(self, url: str) -> str:
        if self._base is None:
            return url
        parts = urlsplit(url)
        query = f"?{parts.query}" if parts.query else ""
        return f"{self._base[0]}://{self._base[1]}{parts.path}{query}"

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,  # noqa: FBT001, FBT002 - twilio's signature
    ) -> Response:
        target = self._target(url)
        send_headers = dict(headers or {})
        if auth is not None:
            send_headers["Authorization"] = _basic_auth(*auth)
        kind = _kind(method, urlsplit(target).path)
        session = self._session_for_loop()
        ticket = await self._limiter.acquire()
        throttled = False
        answer_headers: Mapping[str, str] = {}
        self._metrics.requests[kind] += 1
        try:
            async with session.request(
                method,
                target,
                params=_pairs(params),
                data=_pairs(data) if method != "GET" else None,
                headers=send_headers,
                allow_redirects=False,
                proxy=self._proxy_for(target),
            ) as answer:
                text = await answer.text()
                status = answer.status
                answer_headers = answer.headers
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            self._metrics.transport_errors += 1
            proxy = self._proxy_for(target)
            host = (
                f"{urlsplit(target).netloc} (through proxy {urlsplit(proxy).netloc})"
                if proxy
                else urlsplit(target).netloc
            )
            raise _transport_error(exc, host, self._connection.timeout) from exc
        else:
            throttled = status == 429
        finally:
            self._limiter.release(
                ticket, throttled=throttled, retry_after=retry_after_seconds(answer_headers)
            )
        if status == 429:
            self._metrics.throttled += 1
        elif status >= 500:
            self._metrics.server_errors += 1
        if status >= 400:
            raise _error_from(status, text, answer_headers)
        return Response(status, text, answer_headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def _aware(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def task_record(instance: Any, etag: str | None = None, *, attributes_known: bool) -> TaskRecord:
    """Turn a twilio TaskInstance into our record, reading its attributes when we have them."""
    found = read_attributes(instance.attributes) if attributes_known else None
    return TaskRecord(
        sid=instance.sid,
        status=instance.assignment_status,
        channel=instance.task_channel_unique_name or "",
        queue=instance.task_queue_friendly_name,
        date_created=_aware(instance.date_created),
        date_updated=_aware(instance.date_updated),
        age=instance.age if isinstance(instance.age, int) else None,
        refs=found if isinstance(found, Refs) else None,
        attributes_problem=found if isinstance(found, Reason) else None,
        etag=etag,
    )


def _twilio_errors(exc: Exception) -> StuckTasksError:
    """Map what twilio raised (when our transport did not answer for it)."""
    if isinstance(exc, TwilioRestException):
        return _error_from(exc.status, json.dumps({"code": exc.code, "message": exc.msg}), {})
    if isinstance(exc, TwilioException):
        response = exc.args[1] if len(exc.args) > 1 else None
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return _error_from(status, getattr(response, "text", ""), {})
        return BadResponse(f"Twilio client error: {exc.args[0] if exc.args else exc}")
    return BadResponse(f"Twilio answered with something that is not JSON ({type(exc).__name__})")


class TwilioGateway:
    """Async access to the few Twilio resources the tool needs, as our own records."""

    def __init__(
        self, connection: Connection, *, limiter: AdaptiveLimiter, metrics: Metrics
    ) -> None:
        self.connection = connection
        self._transport = _Transport(connection, limiter, metrics)
        creds = connection.credentials
        self._client = Client(
            username=creds.username,
            password=creds.password,
            account_sid=creds.account_sid,
            region=connection.region,
            edge=connection.edge,
            http_client=self._transport,
            environment={"_": ""},  # never let twilio read TWILIO_* from os.environ behind us
        )

    def __repr__(self) -> str:
        return f"TwilioGateway(account_sid={self.connection.credentials.account_sid!r})"

    async def aclose(self) -> None:
        await self._transport.close()

    async def _call(self, op: Callable[[], Any]) -> Any:
        try:
            return await op()
        except StuckTasksError:
            raise
        except (TwilioException, ValueError, KeyError, TypeError) as exc:
            raise _twilio_errors(exc) from exc

    def _workspaces(self) -> Any:
        return self._client.taskrouter.v1.workspaces

    async def account(self) -> Named:
        sid = self.connection.credentials.account_sid
        acct = await self._call(lambda: self._client.api.v2010.accounts(sid).fetch_async())
        return Named(acct.sid, acct.friendly_name or "")

    async def workspaces(self, friendly_name: str | None = None) -> list[Named]:
        def op() -> Any:
            kwargs: dict[str, Any] = {"page_size": 1000}
            if friendly_name is not None:
                kwargs["friendly_name"] = friendly_name
            return self._workspaces().list_async(**kwargs)

        found = await self._call(op)
        return [Named(ws.sid, ws.friendly_name or "") for ws in found]

    async def workspace(self, sid: str) -> Named:
        ws = await self._call(lambda: self._workspaces()(sid).fetch_async())
        return Named(ws.sid, ws.friendly_name or "")

    async def task_pages(
        self,
        workspace_sid: str,
        *,
        statuses: tuple[str, ...],
        filters: Mapping[str, str],
        fetch_page: Callable[[Callable[[], Any]], Any],
    ) -> AsyncIterator[list[TaskRecord]]:
        """Yield the open tasks a page at a time, following ``next_page_url`` to the end.

        ``fetch_page`` wraps each page request (the caller's retry policy).
        """
        tasks = self._workspaces()(workspace_sid).tasks
        page = await fetch_page(
            lambda: self._call(
                lambda: tasks.page_async(
                    assignment_status=list(statuses), page_size=1000, **filters
                )
            )
        )
        while True:
            # Attributes are null in list results per the spec; read them when present.
            yield [task_record(t, attributes_known=t.attributes is not None) for t in page]
            next_url = page.next_page_url
            if not next_url:
                return
            page = await fetch_page(self._next_page(tasks, next_url))

    def _next_page(self, tasks: Any, url: str) -> Callable[[], Any]:
        return lambda: self._call(lambda: tasks.get_page_async(url))

    async def fetch_task(self, workspace_sid: str, sid: str) -> tuple[TaskRecord, str | None]:
        """Fetch one task with its attributes and ETag; also returns the task's reason."""
        context = self._workspaces()(workspace_sid).tasks(sid)
        answer = await self._call(context.fetch_with_http_info_async)
        etag = _header(answer.headers, "ETag")
        return task_record(answer.data, etag, attributes_known=True), answer.data.reason

    async def fetch_call(self, sid: str) -> CallFacts:
        account = self.connection.credentials.account_sid
        call = await self._call(
            lambda: self._client.api.v2010.accounts(account).calls(sid).fetch_async()
        )
        return CallFacts(
            sid=call.sid,
            status=call.status or "",
            end_time=_aware(call.end_time),
            date_updated=_aware(call.date_updated),
        )

    async def update_task(
        self, workspace_sid: str, sid: str, *, status: str, reason: str, if_match: str | None
    ) -> Written:
        context = self._workspaces()(workspace_sid).tasks(sid)
        kwargs: dict[str, Any] = {"assignment_status": status, "reason": reason}
        if if_match is not None:
            kwargs["if_match"] = if_match
        answer = await self._call(lambda: context.update_with_http_info_async(**kwargs))
        return Written(answer.data.assignment_status, _header(answer.headers, "ETag"))

    # ------------------------------------------------------------ conferences (voice evidence)

    async def fetch_conference(self, sid: str) -> ConferenceFacts:
        account = self.connection.credentials.account_sid
        conf = await self._call(
            lambda: self._client.api.v2010.accounts(account).conferences(sid).fetch_async()
        )
        return ConferenceFacts(conf.sid, conf.status or "", _aware(conf.date_updated))

    async def conferences_named(self, friendly_name: str) -> list[ConferenceFacts]:
        """Conferences whose FriendlyName is ``friendly_name`` (TaskRouter uses the task SID)."""
        account = self.connection.credentials.account_sid
        found = await self._call(
            lambda: self._client.api.v2010.accounts(account).conferences.list_async(
                friendly_name=friendly_name, page_size=50, limit=50
            )
        )
        return [ConferenceFacts(c.sid, c.status or "", _aware(c.date_updated)) for c in found]

    # ------------------------------------------------------------ Flex Conversations

    def _channel(self, interaction_sid: str, channel_sid: str) -> Any:
        return self._client.flex_api.v1.interaction(interaction_sid).channels(channel_sid)

    async def fetch_channel(self, interaction_sid: str, channel_sid: str) -> ChannelFacts:
        channel = await self._call(self._channel(interaction_sid, channel_sid).fetch_async)
        return ChannelFacts(channel.sid, channel.status or "")

    async def channel_participants(
        self, interaction_sid: str, channel_sid: str
    ) -> list[tuple[str, str, dict[str, Any]]]:
        """(sid, type, routing_properties) of each participant of the channel."""
        participants = self._channel(interaction_sid, channel_sid).participants
        found = await self._call(lambda: participants.list_async(page_size=100, limit=100))
        return [(p.sid, p.type or "", dict(p.routing_properties or {})) for p in found]

    async def fetch_conversation(self, sid: str) -> ConversationFacts:
        conv = await self._call(self._client.conversations.v1.conversations(sid).fetch_async)
        return ConversationFacts(conv.sid, conv.state or "", _aware(conv.date_updated))

    async def close_participant(
        self, interaction_sid: str, channel_sid: str, participant_sid: str
    ) -> None:
        """Close the agent's participant: Twilio completes its task, the channel stays open."""
        participant = self._channel(interaction_sid, channel_sid).participants(participant_sid)
        await self._call(lambda: participant.update_async(status="closed"))

    async def close_channel(self, interaction_sid: str, channel_sid: str) -> None:
        """Close the channel and, with Routing ``closed``, its tasks (not just wrap them up)."""
        channel = self._channel(interaction_sid, channel_sid)
        await self._call(
            lambda: channel.update_async(status="closed", routing={"status": "closed"})
        )
