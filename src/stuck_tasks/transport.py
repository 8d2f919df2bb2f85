"""The HTTP transport under the twilio library: twilio's async ``HttpClient`` seam on aiohttp.

Every request of a run goes through ``Transport.request``:

- it goes only to Twilio's own hosts for the configured region and edge (a page URL naming any
  other host is refused before the credentials are sent); with a base URL (the emulator, a
  proxy) the connection goes there and the ``Host`` header still names the Twilio host, like
  curl's ``--connect-to``;
- one total time limit per request (connect, send, and every byte of the answer), and a cap on
  the size of an answer;
- the shared limiter and pacer, the metrics, Twilio's clock (``Date``), typed errors raised
  from the HTTP answer itself, and one log line per request for ``--verbose``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
from twilio.http import AsyncHttpClient
from twilio.http.response import Response

from .clock import TwilioClock
from .errors import (
    ApiError,
    AuthError,
    BadResponse,
    NotFound,
    PermissionDenied,
    Stopped,
    TransportError,
)
from .pacing import header
from .ratecontrol import ATTEMPT, SETTLING, AdaptiveLimiter, Metrics, Stop
from .settings import Connection

log = logging.getLogger("stuck_tasks.http")

PRODUCTS = ("taskrouter", "api", "flex-api", "conversations")
MAX_ANSWER_BYTES = 32 * 1024 * 1024  # a page of 1,000 tasks with attributes is a few MB

_KINDS = (
    # (path shape with * for a SID, GET kind, POST kind)
    ("v1/Workspaces", "list_workspaces", None),
    ("v1/Workspaces/*", "fetch_workspace", None),
    ("v1/Workspaces/*/TaskQueues", "list_task_queues", None),
    ("v1/Workspaces/*/Workflows", "list_workflows", None),
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

# What a Restricted API key needs for each request (Twilio's policy form, as in its IAM Keys
# example "/twilio/messaging/messages/read"; the names are our reading of that form). None:
# no permission grants it (Flex is on no Restricted-key product list).
PERMISSIONS: dict[str, str | None] = {
    "list_workspaces": "/twilio/taskrouter/workspaces/read",
    "fetch_workspace": "/twilio/taskrouter/workspaces/read",
    "list_task_queues": "/twilio/taskrouter/workspaces/task-queues/read",
    "list_workflows": "/twilio/taskrouter/workspaces/workflows/read",
    "list_tasks": "/twilio/taskrouter/workspaces/tasks/read",
    "fetch_task": "/twilio/taskrouter/workspaces/tasks/read",
    "update_task": "/twilio/taskrouter/workspaces/tasks/update",
    "fetch_account": None,
    "fetch_call": "/twilio/voice/calls/read",
    "list_conferences": "/twilio/voice/conferences/read",
    "fetch_conference": "/twilio/voice/conferences/read",
    "fetch_channel": None,
    "update_channel": None,
    "list_participants": None,
    "update_participant": None,
    "fetch_conversation": "/twilio/conversations/conversations/read",
}


def _shape_key(parts: list[str]) -> tuple[object, ...]:
    """What identifies a path's shape: its length, its version and its collection names (every
    shape alternates collection and SID after the version, as the check below ensures)."""
    return (len(parts), *parts[:2], *parts[3::2])


_SHAPES: dict[tuple[object, ...], tuple[str | None, str | None]] = {}
for _shape, _get, _post in _KINDS:
    _parts = _shape.split("/")
    assert all((p == "*") == (i >= 2 and i % 2 == 0) for i, p in enumerate(_parts)), _shape
    _SHAPES[_shape_key(_parts)] = (_get, _post)


def request_kind(method: str, path: str) -> str:
    """The kind of a request ("fetch_task", "update_task", ...) from its method and path."""
    parts = [p.removesuffix(".json") for p in path.split("/") if p]
    found = _SHAPES.get(_shape_key(parts))
    if found is None:
        return "other"
    return (found[1] if method == "POST" else found[0]) or "other"


def twilio_hosts(region: str | None, edge: str | None) -> frozenset[str]:
    """The hosts credentials may go to: each product's, in the configured region and edge."""
    suffix = f"{edge}.{region}.twilio.com" if region and edge else "twilio.com"
    return frozenset(f"{product}.{suffix}" for product in PRODUCTS)


def error_from(
    status: int,
    text: str,
    headers: Mapping[str, str],
    kind: str,
    *,
    secrets: tuple[str, ...] = (),
) -> ApiError:
    """The typed error for an HTTP error answer (Twilio's JSON body, or anything else).

    Its message is shown and logged, so it never echoes a resource: a JSON object that names no
    message (an error status on the Account's own body, which holds its auth token) says so
    instead, and any other text shown has ``secrets`` (the credentials) blotted out first.
    """
    code: int | None = None
    message = _blot(text, secrets, 200) or "(empty body)"
    try:
        body = json.loads(text) if len(text) < 65536 else None
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        raw_code = body.get("code")
        code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
        # RFC 9457 bodies (newer Twilio APIs) say "title"/"detail" instead of "message".
        found = body.get("message") or body.get("detail") or body.get("title")
        if isinstance(found, str) and found.strip():
            message = _blot(found, secrets, 300)
        else:
            message = "(the answer names no error message)"
    cls: type[ApiError] = ApiError
    if status == 403 and code == 70051:
        cls = PermissionDenied
    elif status in (401, 403):
        cls = AuthError
    elif status == 404:
        cls = NotFound
    return cls(status, code, message, retry_after=retry_after_seconds(headers), kind=kind)


def _blot(text: str, secrets: tuple[str, ...], limit: int) -> str:
    """``text`` with each secret replaced (before it is cut, so no part of one shows), its white
    space folded, at most ``limit`` characters."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[secret]")
    return " ".join(text.split())[:limit]


def _no_userinfo(url: str) -> str:
    """A proxy URL's host and port, without the user and password it may carry."""
    return urlsplit(url).netloc.rpartition("@")[2]


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Parse a ``Retry-After`` header given in seconds (Twilio does not document it)."""
    value = header(headers, "Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(0.0, seconds), 600.0) if seconds == seconds else None


@functools.lru_cache(maxsize=4)
def _basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _transport_error(exc: BaseException, host: str, timeout: float) -> TransportError:
    """No answer: say why, and whether the request may have reached Twilio."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or str(exc.os_error) or type(exc.os_error).__name__
        return TransportError(f"cannot connect to {host}: {reason}", sent=False)
    if isinstance(exc, asyncio.TimeoutError):
        return TransportError(f"no complete answer from {host} within {timeout:g}s", sent=True)
    return TransportError(f"connection to {host} dropped: {type(exc).__name__}", sent=True)


def _pairs(values: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Flatten twilio's params (lists mean repeated keys) into what aiohttp sends."""
    out: list[tuple[str, str]] = []
    for key, value in (values or {}).items():
        items = value if isinstance(value, list | tuple) else [value]
        out.extend((key, str(item)) for item in items)
    return out


class Transport(AsyncHttpClient):  # type: ignore[misc]
    """twilio's async HTTP client seam: timeouts, hosts, pooling, rate control, typed errors."""

    def __init__(
        self,
        connection: Connection,
        *,
        limiter: AdaptiveLimiter,
        metrics: Metrics,
        clock: TwilioClock,
        stop: Stop,
    ) -> None:
        super().__init__(log, is_async=True, timeout=connection.timeout)
        self._connection = connection
        self._stop = stop
        self._limiter = limiter
        self._metrics = metrics
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._hosts = twilio_hosts(connection.region, connection.edge)
        creds = connection.credentials
        # Never shown, should an answer echo them (a proxy's error page, a resource's body).
        self._secrets = (creds.password, _basic_auth(creds.username, creds.password)[6:])
        base = urlsplit(connection.base_url) if connection.base_url else None
        self._base = (base.scheme, base.netloc) if base else None
        self._proxies: dict[tuple[str, str], str | None] = {}
        # "https://taskrouter.twilio.com/" and the like: a URL that starts with one of these
        # names a Twilio host on the default port with no credentials in it, so the common
        # case skips urlsplit (every other URL gets the full check).
        self._prefixes = tuple(f"https://{host}/" for host in sorted(self._hosts))

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = self._connection.timeout
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connection.pool_size, ttl_dns_cache=300),
                # One limit for the whole request, so a server that trickles bytes cannot hold
                # a request open past --timeout.
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=timeout),
                # Not trust_env: aiohttp would then re-read the environment and ~/.netrc in a
                # worker thread on every request (most of our CPU per request), and a netrc entry
                # for the API host would clash with our own Authorization header. Proxies from
                # HTTPS_PROXY/NO_PROXY are honoured by _proxy_for, once per host.
                trust_env=False,
                auto_decompress=True,
                # Twilio's REST API sets no cookie we need, and none should travel between
                # requests: no jar, and no jar to consult on every request.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def _proxy_for(self, target: str) -> str | None:
        """The proxy the environment names for ``target`` (like twilio's sync client)."""
        scheme, _, rest = target.partition("://")
        netloc = rest.partition("/")[0]
        key = (scheme, netloc)
        if key not in self._proxies:
            proxy = getproxies().get(scheme)
            if proxy and proxy_bypass(urlsplit(target).hostname or ""):
                proxy = None
            self._proxies[key] = proxy or None
        return self._proxies[key]

    def _target(self, url: str) -> tuple[str, str, str]:
        """(the URL to connect to, the Twilio host it is meant for, the path); refuses other
        hosts."""
        if url.startswith(self._prefixes) and "#" not in url:
            host_end = url.index("/", 8)
            path, _, _ = url[host_end:].partition("?")
            if self._base is None:
                return url, url[8:host_end], path
            return f"{self._base[0]}://{self._base[1]}{url[host_end:]}", url[8:host_end], path
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or host not in self._hosts or parts.port not in (None, 443):
            raise BadResponse(
                f"refusing to send credentials to {parts.scheme}://{parts.netloc}: "
                "not a Twilio API host of the configured region (a page URL in Twilio's answer "
                "named it)"
            )
        if parts.username or parts.password:
            raise BadResponse("refusing a URL with credentials in it")
        if self._base is None:
            return url, host, parts.path
        query = f"?{parts.query}" if parts.query else ""
        return f"{self._base[0]}://{self._base[1]}{parts.path}{query}", host, parts.path

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
        target, host, path = self._target(url)
        kind = request_kind(method, path)
        send_headers = dict(headers or {})
        if auth is not None:
            send_headers["Authorization"] = _basic_auth(*auth)
        if self._base is not None:
            send_headers["Host"] = host
        if method != "GET":
            send_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        session = self._session_for_loop()
        ticket = await self._limiter.acquire(kind)
        if self._stop.requested and not SETTLING.get():
            # Waited in the limiter while the run began to stop: not sent at all.
            self._limiter.release(ticket, status=None)
            raise Stopped("the run is stopping")
        self._metrics.sent(kind)
        started = time.monotonic()
        status: int | None = None
        answer_headers: Mapping[str, str] = {}
        refused: ApiError | None = None
        try:
            async with session.request(
                method,
                target,
                params=_pairs(params),
                # Encoded here (twilio's Content-Type says form): aiohttp's FormData would build
                # a multipart writer per request first.
                data=urlencode(_pairs(data)).encode("ascii") if method != "GET" else None,
                headers=send_headers,
                allow_redirects=False,
                proxy=self._proxy_for(target),
            ) as answer:
                status, answer_headers = answer.status, answer.headers
                body = await _read_capped(answer)
            if status in (401, 403):
                # Credentials refused stop every stage, but the error reaches the stage that
                # asked a loop turn or two later (through asyncio.gather), while this slot goes
                # to the next request at once: the run stops here first, so nothing new is sent.
                refused = error_from(
                    status, _decode(body, kind), answer_headers, kind, secrets=self._secrets
                )
                self._stop.fail(refused)
        except (TimeoutError, aiohttp.ClientError) as exc:
            self._metrics.no_answer()
            self._log(method, path, None, started, kind)
            proxy = self._proxy_for(target)
            shown = host if self._base is None else f"{self._base[1]} (standing in for {host})"
            if proxy:
                shown += f" through proxy {_no_userinfo(proxy)}"
            raise _transport_error(exc, shown, self._connection.timeout) from exc
        finally:
            self._limiter.release(
                ticket,
                status=status,
                headers=answer_headers,
                retry_after=retry_after_seconds(answer_headers) if status == 429 else None,
            )
        self._clock.observe(header(answer_headers, "Date"))
        self._metrics.answered(status)
        self._log(method, path, status, started, kind)
        if refused is not None:
            raise refused
        text = _decode(body, kind)
        if status >= 400:
            raise error_from(status, text, answer_headers, kind, secrets=self._secrets)
        if status >= 300 or status < 200:
            raise BadResponse(f"Twilio answered HTTP {status} to {kind.replace('_', ' ')}")
        return Response(status, text, answer_headers)

    def _log(self, method: str, path: str, status: int | None, started: float, kind: str) -> None:
        if log.isEnabledFor(logging.INFO):
            took = (time.monotonic() - started) * 1000
            log.info(
                "%s %s -> %s in %.0f ms (try %d)",
                method,
                path,
                status if status is not None else "no answer",
                took,
                ATTEMPT.get(),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_capped(answer: aiohttp.ClientResponse) -> bytes:
    if answer.content_length is not None and answer.content_length > MAX_ANSWER_BYTES:
        raise BadResponse(f"Twilio's answer is {answer.content_length} bytes, more than allowed")
    if answer.content_length is not None and "Content-Encoding" not in answer.headers:
        return await answer.read()  # its length is known and within the cap (not compressed)
    chunks: list[bytes] = []
    size = 0
    async for chunk in answer.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise BadResponse(f"Twilio's answer is larger than {MAX_ANSWER_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(body: bytes, kind: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadResponse(
            f"Twilio's answer to {kind.replace('_', ' ')} is not UTF-8 text"
        ) from None
