"""A hostile man in the middle: forwards every request to an upstream, then answers, maybe mutated.

The proxy sends each request on unchanged (method, path, query, body and headers, ``Host`` and
``Authorization`` included), waits for the whole upstream answer and then applies the first rule
of its ``Plan`` whose selector picks the request. A write has therefore been applied upstream
before its answer is garbled, dropped or trickled: the dangerous case, where the client must
settle the outcome by reading the task again.

Clients connect to the proxy's loopback address and name the Twilio host they mean in ``Host``
(``Host: taskrouter.twilio.com``), as with the emulator itself; the proxy passes that ``Host``
on as received, so the emulator serves that host and its absolute URLs read
``https://{that host}/...``. Mutations that write a URL write such a Twilio URL.

Every selector and mutation is a small frozen value, so hypothesis can generate them and a
failing case prints readably::

    plan = Plan((Rule(Select("update_task", when=Nth(2)), Status(500)),))
    with MutatingProxy(emu.base_url, plan) as proxy:
        ...  # point the client at proxy.base_url; read proxy.log afterwards
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal, Union

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

# ------------------------------------------------------------------ request kinds

_SHAPES = (
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
KINDS: tuple[str, ...] = tuple(k for _, get, post in _SHAPES for k in (get, post) if k)
# Group names a selector may use instead of one kind.
GROUPS: dict[str, frozenset[str]] = {
    "interactions": frozenset(
        {
            "fetch_channel",
            "update_channel",
            "list_participants",
            "update_participant",
            "fetch_conversation",
        }
    ),
    "conferences": frozenset({"list_conferences", "fetch_conference"}),
    "workspaces": frozenset({"list_workspaces", "fetch_workspace"}),
    "writes": frozenset({"update_task", "update_channel", "update_participant"}),
}


def route_kind(method: str, path: str) -> str:
    """The kind of a Twilio request (``fetch_task``, ``update_task``, ...), or ``other``."""
    parts = [p.removesuffix(".json") for p in path.split("/") if p]
    for shape, get, post in _SHAPES:
        pattern = shape.split("/")
        if len(pattern) == len(parts) and all(
            a in ("*", b) for a, b in zip(pattern, parts, strict=True)
        ):
            return (post if method == "POST" else get) or "other"
    return "other"


# ------------------------------------------------------------------ selectors


@dataclass(frozen=True)
class Nth:
    """Only the n-th matching request (1-based)."""

    n: int


@dataclass(frozen=True)
class Every:
    """Every k-th matching request: the k-th, 2k-th, ..."""

    k: int


@dataclass(frozen=True)
class From:
    """The n-th matching request and every one after it: a service that breaks mid-run."""

    n: int


@dataclass(frozen=True)
class Always:
    """Every matching request."""


When = Union[Nth, Every, From, Always]  # noqa: UP007 - a runtime alias


@dataclass(frozen=True)
class Select:
    """Which requests a rule picks: by kind (or group), method, and occurrence among those.

    :param kind: a name from ``KINDS`` or ``GROUPS``; None for any request.
    :param method: ``GET`` or ``POST``; None for either.
    :param when: which of the matching requests, counted per rule in arrival order.
    """

    kind: str | None = None
    method: str | None = None
    when: When = Always()

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS and self.kind not in GROUPS:
            raise ValueError(f"unknown request kind {self.kind!r}")

    def matches(self, method: str, kind: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.kind is None:
            return True
        return kind in GROUPS.get(self.kind, frozenset({self.kind}))

    def fires(self, count: int) -> bool:
        """Whether the ``count``-th matching request (1-based) is picked."""
        when = self.when
        if isinstance(when, Nth):
            return count == when.n
        if isinstance(when, Every):
            return count % when.k == 0
        if isinstance(when, From):
            return count >= when.n
        return True


# ------------------------------------------------------------------ answers and mutations


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as the proxy will send it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def with_header(self, name: str, value: str | None) -> Answer:
        kept = tuple((k, v) for k, v in self.headers if k.lower() != name.lower())
        return replace(self, headers=kept if value is None else (*kept, (name, value)))

    def with_json(self, value: Any) -> Answer:
        answer = replace(self, body=json.dumps(value).encode())
        return answer.with_header("Content-Type", "application/json")


@dataclass(frozen=True)
class Context:
    """What a mutation may know about the request it answers."""

    method: str
    kind: str
    url: str  # the Twilio URL the client meant: https://{its Host header}/path?query
    previous: Answer | None  # the previous upstream answer of the same kind


JsonPath = tuple[Union[str, int], ...]  # noqa: UP007
EACH = "*"  # in a JsonPath: every element of a list (or every value of an object)


_NOT_JSON = object()


def _parse(answer: Answer) -> Any:
    try:
        return json.loads(answer.body)
    except ValueError:
        return _NOT_JSON


def _has(value: Any, key: str | int) -> bool:
    if isinstance(value, dict):
        return isinstance(key, str) and key in value
    return isinstance(value, list) and isinstance(key, int) and -len(value) <= key < len(value)


def _children(value: Any) -> Iterable[str | int]:
    if isinstance(value, list):
        return range(len(value))
    return list(value) if isinstance(value, dict) else ()


def _parents(value: Any, path: JsonPath) -> Iterator[tuple[Any, str | int]]:
    """Every (container, key) that ``path`` names in ``value``.

    A missing step names nothing, except the last one in an object: a new key.
    """
    if not path:
        return
    head, rest = path[0], path[1:]
    keys: Iterable[str | int]
    if head == EACH:
        keys = _children(value)
    elif _has(value, head) or (not rest and isinstance(value, dict) and isinstance(head, str)):
        keys = (head,)
    else:
        keys = ()
    for key in keys:
        if rest:
            yield from _parents(value[key], rest)
        else:
            yield value, key


class Unchanged(Exception):
    """The mutation found nothing to change (not JSON, no such path, nothing to repeat)."""


@dataclass(frozen=True)
class SetValue:
    """Put ``value`` at ``path`` (``"*"`` steps over every element); a new key is added."""

    path: JsonPath
    value: Any

    def apply(self, answer: Answer, ctx: Context) -> Answer:
        doc = _parse(answer)
        targets = list(_parents(doc, self.path)) if doc is not _NOT_JSON else []
        if not targets:
            raise Unchanged(f"no {'/'.join(map(str, self.path))} in the answer")
        for container, key in targets:
            container[key] = json.loads(json.dumps(self.value))  # a fresh copy each time
        return answer.with_json(doc)


@dataclass(frozen=True)
class DeleteKey:
    """Remove what ``path`` names: a key from its object, or an element from its list (a page
    row: ``("tasks", 0)``; ``("tasks", "*")`` empties the list)."""

    path: JsonPath

    def apply(self, answer: Answer, ctx: Context) -> Answer:
        doc = _parse(answer)
        targets = [
            (c, k)
            for c, k in (_parents(doc, self.path) if doc is not _NOT_JSON else ())
            if _has(c, k)
        ]
        if not targets:
            raise Unchanged(f"no {'/'.join(map(str, self.path))} in the answer")
        # Last index first, so that the indices still to delete keep pointing at their element.
        for container, key in sorted(
            targets, key=lambda t: t[1] % len(t[0]) if isinstance(t[1], int) else 0, reverse=True
        ):
            del container[key]
        return answer.with_json(doc)


def _nulled(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _nulled(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulled(v) for v in value]
    return None


@dataclass(frozen=True)
class NullEverywhere:
    """Every scalar in the JSON answer becomes null; objects and lists keep their shape."""

    def apply(self, answer: Answer, ctx: Context) -> Answer:
        doc = _parse(answer)
        if doc is _NOT_JSON:
            raise Unchanged("not JSON")
        return answer.with_json(_nulled(doc))


FOREIGN_MARKER = "ProxyForeignHost=1"


def origin_form(raw_target: str) -> str:
    """The path and query of a request target.

    A client that takes the proxy for a forward proxy sends the absolute form
    (``GET https://taskrouter.twilio.com/v1/... HTTP/1.1``); only its path and query go upstream
    (its Host header names the host). An origin-form target (``/v1/...``, even ``//x/...``) is
    kept as it is.
    """
    if raw_target.startswith("/") or not raw_target:
        return raw_target or "/"
    return URL(raw_target, encoded=True).raw_path_qs


def strip_marker(raw_path_qs: str) -> tuple[str, bool]:
    """``raw_path_qs`` without the foreign-host marker, and whether it carried one."""
    path, sep, query = raw_path_qs.partition("?")
    params = query.split("&") if sep else []
    kept = [p for p in params if p != FOREIGN_MARKER]
    if len(kept) == len(params):
        return raw_path_qs, False
    return path + ("?" + "&".join(kept) if kept else ""), True


@dataclass(frozen=True)
class NextPage:
    """Point the page's next page at this very page (a loop), or somewhere a client must not go.

    ``"same"``: the URL of this page as the client meant it (``https://{Host}/path?query``).
    ``"foreign"``: the real next page (this page on the last one) at ``{scheme}://{host}``, with
    ``FOREIGN_MARKER`` added to its query so the proxy sees a client that followed it. ``host``
    is anything a URL's authority may hold (``evil.example.com``, a look-alike, another region's
    Twilio host, ``user@host``, ``host:port``); None keeps the Host the client named, so
    ``scheme="http"`` alone is a downgrade.

    TaskRouter pages say ``meta.next_page_url`` (absolute); v2010 lists say ``next_page_uri``
    (relative to the API host, so it cannot name another host): there "foreign" adds a
    ``meta.next_page_url``, which twilio's ``Page.next_page_url`` prefers to ``next_page_uri``.
    """

    target: Literal["same", "foreign"]
    host: str | None = "evil.example.com"
    scheme: str = "https"

    def apply(self, answer: Answer, ctx: Context) -> Answer:
        doc = _parse(answer)
        if not isinstance(doc, dict):
            raise Unchanged("not a list page")
        meta = doc.get("meta")
        here = URL(ctx.url, encoded=True)
        if isinstance(meta, dict):
            real = meta.get("next_page_url")
            if self.target == "same":
                meta["next_page_url"] = ctx.url
                return answer.with_json(doc)
        elif "next_page_uri" in doc:  # v2010 lists
            real = doc["next_page_uri"]
            if self.target == "same":
                doc["next_page_uri"] = here.raw_path_qs
                return answer.with_json(doc)
            meta = doc["meta"] = {}
        else:
            raise Unchanged("not a list page")
        # Only the path and query of the real next page: a relative next_page_uri has no host.
        tail = URL(real if isinstance(real, str) and real else ctx.url, encoded=True).raw_path_qs
        marked = tail + ("&" if "?" in tail else "?") + FOREIGN_MARKER
        host = here.raw_authority if self.host is None else self.host
        meta["next_page_url"] = f"{self.scheme}://{host}{marked}"
        return answer.with_json(doc)


@dataclass(frozen=True)
class DeepNesting:
    """The whole body becomes one JSON array nested ``depth`` deep."""

    depth: int = 100_000

    def apply(self, answer: Answer, ctx: Context) -> Answer:
        body = b"[" * self.depth + b"]" * self.depth
        return replace(answer, body=body).with_header("Content-Type", "application/json")


@dataclass(frozen=True)
class HugeBody:
    """Valid JSON of about ``megabytes`` MB: the answer plus a long unknown string member."""

    megabytes: int = 20

    def apply(self, answer: Answer, ctx: Context) -> Answer:
        doc = _parse(answer)
        if not isinstance(doc, dict):
            doc = {"value": None if doc is _NOT_JSON else doc}
        doc["zz_padding"] = "x" * (self.megabytes * 1_000_000)
        return answer.with_json(doc)


@dataclass(frozen=True)
class Truncate:
    """Keep the first ``keep`` bytes of the body (at most all but one); Content-Length agrees."""

    keep: int

    def apply(self, answer: Answer, ctx: Context) -> Answer:
        if not answer.body:
            raise Unchanged("empty body")
        return replace(answer, body=answer.body[: min(self.keep, len(answer.body) - 1)])


HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>"
    b"<h1>Captive portal</h1><p>Please sign in to the corporate proxy.</p></body></html>"
)


@dataclass(frozen=True)
class Html:
    """An HTML proxy page instead of the answer, with status ``status`` (200 by default)."""

    status: int = 200

    def apply(self, answer: Answer, ctx: Context) -> Answer:
        html = replace(answer, status=self.status, body=HTML_PAGE)
        return html.with_header("Content-Type", "text/html").with_header("ETag", None)


@dataclass(frozen=True)
class EmptyBody:
    """The same status and headers, no body."""

    def apply(self, answer: Answer, ctx: Context) -> Answer:
        return replace(answer, body=b"")


TWILIO_CODES = {
    400: 20001,
    401: 20003,
    403: 20403,
    404: 20404,
    412: 20412,
    429: 20429,
    500: 20500,
    502: 20500,
    503: 20503,
}


@dataclass(frozen=True)
class Status:
    """Answer with status ``code``; ``body`` keeps the upstream body, or uses Twilio's error body
    for that status (with Twilio error ``error``, by default the usual one for the status, e.g.
    400/20001, 412/20412; 400/80906 and 403/70051 name refusals of their own), or none."""

    code: int
    body: Literal["keep", "twilio", "empty"] = "twilio"
    error: int | None = None

    def apply(self, answer: Answer, ctx: Context) -> Answer:
        swapped = replace(answer, status=self.code)
        if self.body == "empty":
            return replace(swapped, body=b"")
        if self.body == "twilio":
            return swapped.with_header("ETag", None).with_json(
                {
                    "code": self.error or TWILIO_CODES.get(self.code, 20001),
                    "message": f"injected {self.code}",
                    "more_info": "https://www.twilio.com/docs/errors",
                    "status": self.code,
                }
            )
        return swapped


@dataclass(frozen=True)
class SetHeader:
    """Set (or with None, remove) one header of the answer, e.g. ``ETag``."""

    name: str
    value: str | None

    def apply(self, answer: Answer, ctx: Context) -> Answer:
        return answer.with_header(self.name, self.value)


@dataclass(frozen=True)
class Repeat:
    """Answer with the previous upstream answer of the same kind (status, headers, body)."""

    def apply(self, answer: Answer, ctx: Context) -> Answer:
        if ctx.previous is None:
            raise Unchanged("no previous answer of this kind")
        return ctx.previous


@dataclass(frozen=True)
class Trickle:
    """Send the headers at once, then ``chunk`` bytes of the body every ``interval`` seconds."""

    chunk: int = 8
    interval: float = 0.5


@dataclass(frozen=True)
class Drop:
    """Close the connection instead of answering.

    ``unsent``: before forwarding (upstream never sees the request); ``before_answer``: after
    upstream answered, before any byte goes back; ``mid_body``: after the headers (with the full
    Content-Length) and half of the body.
    """

    stage: Literal["unsent", "before_answer", "mid_body"] = "before_answer"


BodyMutation = Union[  # noqa: UP007
    SetValue,
    DeleteKey,
    NullEverywhere,
    NextPage,
    DeepNesting,
    HugeBody,
    Truncate,
    Html,
    EmptyBody,
    Status,
    SetHeader,
    Repeat,
]
Mutation = Union[BodyMutation, Trickle, Drop]  # noqa: UP007


@dataclass(frozen=True)
class Rule:
    select: Select
    mutation: Mutation


@dataclass(frozen=True)
class Plan:
    """Rules in order; for each request the first rule that fires is applied (at most one)."""

    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Exchange:
    """One request through the proxy and what was done to its answer."""

    seq: int
    method: str
    path: str
    query: str
    host: str  # the Host header the client sent
    kind: str
    followed_foreign: bool  # the client followed a next_page_url that NextPage("foreign") made
    upstream_status: int | None  # None: never forwarded, or upstream failed
    status: int | None  # what the client was sent; None: the connection was closed
    rule: int | None  # index into plan.rules
    mutation: Mutation | None
    note: str = ""  # why a fired mutation changed nothing, or what went wrong upstream
    seconds: float = 0.0  # from the request's arrival to its answer's last byte (or hang-up)
    delivered: bool = True  # the whole answer was written (False: dropped, or abandoned trickle)


# ------------------------------------------------------------------ the server

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


@dataclass
class _State:
    counts: list[int]
    previous: dict[str, Answer] = field(default_factory=dict)
    log: list[Exchange] = field(default_factory=list)
    seq: int = 0


class MutatingProxy:
    """An HTTP proxy on 127.0.0.1 (a free port) in front of ``upstream``, mutating by ``plan``.

    ``start()`` serves from a daemon thread with its own event loop, like the emulator.
    """

    def __init__(self, upstream: str, plan: Plan | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.plan = plan or Plan()
        self._lock = threading.Lock()
        self._state = _State(counts=[0] * len(self.plan.rules))
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._base_url: str | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the proxy is not running; call start() first")
        return self._base_url

    @property
    def log(self) -> list[Exchange]:
        with self._lock:
            return list(self._state.log)

    def applied(self) -> list[Exchange]:
        """The exchanges whose answer a rule changed."""
        return [e for e in self.log if e.mutation is not None and not e.note]

    # ------------------------------------------------------------- life cycle

    def start(self) -> str:
        if self._base_url is not None:
            return self._base_url
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        ready = threading.Event()
        errors: list[BaseException] = []
        thread = threading.Thread(
            target=self._serve, args=(sock, ready, errors), name="mutating-proxy", daemon=True
        )
        thread.start()
        ready.wait()
        if errors:
            thread.join()
            raise RuntimeError("proxy failed to start") from errors[0]
        self._thread = thread
        self._base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self._base_url

    def _serve(
        self, sock: socket.socket, ready: threading.Event, errors: list[BaseException]
    ) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.2)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.SockSite(runner, sock, backlog=1024).start())
            self._session = loop.run_until_complete(_upstream_session())
        except BaseException as exc:  # report any start-up failure to start()
            errors.append(exc)
            sock.close()
            ready.set()
            loop.close()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            # Trickles still under way (their client gave up or was killed) end here.
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(self._session.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            sock.close()

    def stop(self) -> None:
        """Stop serving (idempotent); the log stays readable."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._loop = self._thread = self._base_url = None

    def __enter__(self) -> MutatingProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------- one request

    def _choose(self, method: str, kind: str) -> tuple[int, int | None]:
        """Advance the rule counters; the request's number and the rule that fires, if any."""
        with self._lock:
            state = self._state
            state.seq += 1
            chosen = None
            for i, rule in enumerate(self.plan.rules):
                if rule.select.matches(method, kind):
                    state.counts[i] += 1
                    if chosen is None and rule.select.fires(state.counts[i]):
                        chosen = i
            return state.seq, chosen

    def _remember(self, kind: str, upstream: Answer) -> Answer | None:
        """Keep ``upstream`` as the latest answer of its kind; return the one before it."""
        with self._lock:
            previous = self._state.previous.get(kind)
            self._state.previous[kind] = upstream
            return previous

    async def _forward(self, request: web.Request, raw_path_qs: str, body: bytes) -> Answer:
        assert self._session is not None
        # Every end-to-end header as received, Host included: it names the Twilio host the
        # client means, and the upstream session adds no Host of its own when one is given.
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP
        )
        url = URL(self.upstream + raw_path_qs, encoded=True)
        async with self._session.request(
            request.method,
            url,
            headers=headers,
            data=body if body or request.method not in ("GET", "HEAD") else None,
            allow_redirects=False,
        ) as resp:
            data = await resp.read()
            kept = tuple((k, v) for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP)
            return Answer(resp.status, kept, data)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        method = request.method
        kind = route_kind(method, request.path)
        raw_path_qs, foreign = strip_marker(origin_form(request.raw_path))
        body = await request.read()
        seq, rule_index = self._choose(method, kind)
        mutation = None if rule_index is None else self.plan.rules[rule_index].mutation
        host = request.headers.get("Host", "")

        def record(
            upstream: Answer | None, status: int | None, note: str = "", *, delivered: bool
        ) -> None:
            exchange = Exchange(
                seq=seq,
                method=method,
                path=request.path,
                query=URL(raw_path_qs, encoded=True).query_string,
                host=host,
                kind=kind,
                followed_foreign=foreign,
                upstream_status=None if upstream is None else upstream.status,
                status=status,
                rule=rule_index,
                mutation=mutation,
                note=note,
                seconds=time.monotonic() - started,
                delivered=delivered,
            )
            with self._lock:
                self._state.log.append(exchange)

        if isinstance(mutation, Drop) and mutation.stage == "unsent":
            record(None, None, delivered=False)
            return _hang_up(request)
        try:
            upstream = await self._forward(request, raw_path_qs, body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            record(None, None, f"upstream failed: {exc!r}", delivered=False)
            return _hang_up(request)
        previous = self._remember(kind, upstream)
        if isinstance(mutation, Drop):
            resp = await _drop(request, mutation, upstream)
            record(upstream, None, delivered=False)
            return resp
        if isinstance(mutation, Trickle):
            delivered = False
            try:  # also when stop() cancels a trickle still under way
                resp, delivered = await _trickle(request, upstream, mutation)
            finally:
                record(upstream, upstream.status, delivered=delivered)
            return resp
        answer, note = upstream, ""
        if mutation is not None:
            url = f"https://{host}{raw_path_qs}"  # what Twilio's own URLs look like
            try:
                answer = mutation.apply(upstream, Context(method, kind, url, previous))
            except Unchanged as why:
                note = f"unchanged: {why}"
        record(upstream, answer.status, note, delivered=True)
        headers = CIMultiDict(answer.headers)
        return web.Response(status=answer.status, body=answer.body, headers=headers)


async def _drop(request: web.Request, drop: Drop, upstream: Answer) -> web.StreamResponse:
    if drop.stage == "before_answer" or len(upstream.body) < 2:
        return _hang_up(request)
    resp = _stream(upstream)
    await resp.prepare(request)
    await resp.write(upstream.body[: len(upstream.body) // 2])
    await resp.drain()
    return _hang_up(request, resp)


async def _upstream_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=200),
        auto_decompress=False,
        # Send the client's headers and only those (aiohttp adds these when they are absent).
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=60),
    )


def _hang_up(request: web.Request, resp: web.StreamResponse | None = None) -> web.StreamResponse:
    """Close the connection; aiohttp then fails to finish the response and drops it."""
    if request.transport is not None:
        request.transport.close()
    return resp if resp is not None else web.Response(status=500)


def _stream(answer: Answer) -> web.StreamResponse:
    resp = web.StreamResponse(status=answer.status, headers=CIMultiDict(answer.headers))
    resp.content_length = len(answer.body)
    return resp


async def _trickle(
    request: web.Request, answer: Answer, trickle: Trickle
) -> tuple[web.StreamResponse, bool]:
    """Send ``answer`` slowly; whether the client waited for all of it."""
    resp = _stream(answer)
    await resp.prepare(request)
    body = answer.body
    try:
        for start in range(0, len(body), trickle.chunk):
            if start:
                await asyncio.sleep(trickle.interval)
            await resp.write(body[start : start + trickle.chunk])
        await resp.write_eof()
    except ConnectionError:
        return resp, False  # the client gave up: what a trickle is for
    return resp, True
