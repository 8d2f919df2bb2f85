"""aiohttp application: Twilio routes, hosts, auth, fault injection, request log, admin routes.

Every Twilio-route request passes, in order: the Host (a served Twilio product host, else
404/20404), the credentials (401/20003, also when revoked or of another region), the product
(a path on another product's host: 404/20404), the key's permissions (401/20003 or 403/70051),
a well-formed request (400), then the rate limits and the route itself.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import render
from .access import Principal, refusal
from .faults import Faults
from .hosts import HostRefused, TwilioHost, parse_host, product_for_path
from .limits import SlidingWindows, limit_for
from .model import LoggedRequest
from .world import ApiError, World

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TwilioHandler = Callable[[web.Request, "_Ctx"], Awaitable[web.StreamResponse]]

_HTML = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The proxy received an invalid response.</p></body></html>"
)


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=json.dumps(payload).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(status: int, code: int, message: str | None = None) -> web.Response:
    return json_response(render.error_body(status, code, message), status)


async def _placeholder(request: web.Request) -> web.StreamResponse:
    raise AssertionError("Twilio routes are dispatched by TwilioApp._process")


def _garbled(resp: web.StreamResponse) -> web.Response:
    """A 200 whose JSON body is cut off mid-document (its headers kept, Content-Length right)."""
    body = resp.body if isinstance(resp, web.Response) else None
    raw = body if isinstance(body, bytes) else b"{}"
    out = web.Response(body=raw[: max(1, len(raw) // 2)], status=200)
    for name, value in resp.headers.items():
        if name.lower() != "content-length":
            out.headers[name] = value
    return out


def _http_error(exc: web.HTTPException) -> web.Response:
    if exc.status == 405:
        return error_response(405, 20004, "Method not allowed")
    if exc.status == 404:
        return error_response(404, 20404)
    return error_response(exc.status, 20001, exc.reason)


_FORM = "application/x-www-form-urlencoded"
_HEX = frozenset("0123456789abcdefABCDEF")


def _percent_decode(raw: str) -> str:
    """Strict form decoding: ASCII only, ``+`` is a space, every ``%`` takes two hex digits,
    and the bytes must be UTF-8 (urllib's parse_qsl would keep or replace bad input)."""
    if not raw.isascii():
        raise ValueError("not ASCII")
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == "%":
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise ValueError("bad percent-encoding")
            out.append(int(pair, 16))
            i += 3
            continue
        out.append(0x20 if c == "+" else ord(c))
        i += 1
    return out.decode("utf-8")


def _parse_pairs(raw: str) -> list[tuple[str, str]]:
    pairs = []
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((_percent_decode(name), _percent_decode(value)))
    return pairs


def _parse_query(request: web.Request) -> tuple[dict[str, list[str]], ApiError | None]:
    query: dict[str, list[str]] = {}
    try:
        pairs = _parse_pairs(request.rel_url.raw_query_string)
    except ValueError:
        # Undocumented: Twilio's handling of a malformed query string is not published; the
        # emulator refuses it (stricter than decoding it leniently).
        return query, ApiError(400, 20001, "Malformed query string")
    for name, value in pairs:
        query.setdefault(name, []).append(value)
    return query, None


async def _read_form(request: web.Request) -> tuple[dict[str, str], ApiError | None]:
    """A POST's form: Twilio's APIs take application/x-www-form-urlencoded bodies only."""
    if request.method != "POST":
        return {}, None
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        # Undocumented: no Twilio client compresses request bodies; aiohttp would inflate gzip
        # and pass unknown codings through as they are. Refused (stricter).
        return {}, ApiError(400, 20001, "Content-Encoding is not supported")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return {}, ApiError(413, 20001, "Request body too large")
    except Exception:  # a body aiohttp cannot read (bad chunking or Content-Encoding)
        return {}, ApiError(400, 20001, "Malformed request body")
    if not body:
        return {}, None
    media, *params = request.headers.get("Content-Type", "").split(";")
    charset = "utf-8"
    for param in params:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    if media.strip().lower() != _FORM or charset not in ("utf-8", "utf8"):
        # Undocumented: a JSON, multipart or other body on these endpoints is refused (a
        # lenient server would ignore it and apply an empty update: stricter).
        return {}, ApiError(400, 20001, f"Content-Type must be {_FORM}")
    try:
        pairs = _parse_pairs(body.decode("ascii"))
    except ValueError:
        return {}, ApiError(400, 20001, "Malformed form body")
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            # Undocumented: a parameter given twice is refused (stricter than last-one-wins).
            return {}, ApiError(400, 20001, f"Parameter {name} given more than once")
        form[name] = value
    return form, None


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class _Outcome:
    response: web.StreamResponse
    code: int | None = None
    fault: str | None = None
    drop: bool = False


@dataclass
class _Ctx:
    account_sid: str
    query: dict[str, list[str]]
    form: dict[str, str]
    if_match: str | None
    base: str  # https://{the Twilio host the request named}
    extra_headers: dict[str, str] = field(default_factory=dict)


class TwilioApp:
    """Builds the aiohttp app serving one World."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._buckets: dict[str, _Bucket] = {}
        self._bucket_faults: Faults | None = None
        self._windows = SlidingWindows()
        self._handlers: dict[str, TwilioHandler] = {
            "list_workspaces": self._list_workspaces,
            "fetch_workspace": self._fetch_workspace,
            "list_task_queues": self._list_task_queues,
            "list_workflows": self._list_workflows,
            "list_tasks": self._list_tasks,
            "fetch_task": self._fetch_task,
            "update_task": self._update_task,
            "fetch_account": self._fetch_account,
            "fetch_call": self._fetch_call,
            "fetch_conference": self._fetch_conference,
            "list_conferences": self._list_conferences,
            "fetch_interaction_channel": self._fetch_interaction_channel,
            "update_interaction_channel": self._update_interaction_channel,
            "list_interaction_participants": self._list_interaction_participants,
            "update_interaction_participant": self._update_interaction_participant,
            "fetch_conversation": self._fetch_conversation,
        }

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/v1/Workspaces", _placeholder, name="list_workspaces")
        r.add_get("/v1/Workspaces/{ws}", _placeholder, name="fetch_workspace")
        r.add_get("/v1/Workspaces/{ws}/TaskQueues", _placeholder, name="list_task_queues")
        r.add_get("/v1/Workspaces/{ws}/Workflows", _placeholder, name="list_workflows")
        r.add_get("/v1/Workspaces/{ws}/Tasks", _placeholder, name="list_tasks")
        r.add_get("/v1/Workspaces/{ws}/Tasks/{task}", _placeholder, name="fetch_task")
        r.add_post("/v1/Workspaces/{ws}/Tasks/{task}", _placeholder, name="update_task")
        r.add_get("/2010-04-01/Accounts/{ac}.json", _placeholder, name="fetch_account")
        r.add_get("/2010-04-01/Accounts/{ac}/Calls/{ca}.json", _placeholder, name="fetch_call")
        conferences = "/2010-04-01/Accounts/{ac}/Conferences"
        r.add_get(conferences + ".json", _placeholder, name="list_conferences")
        r.add_get(conferences + "/{cf}.json", _placeholder, name="fetch_conference")
        # Routes of every product share one path space; the Host header picks the product.
        channel = "/v1/Interactions/{kd}/Channels/{uo}"
        r.add_get(channel, _placeholder, name="fetch_interaction_channel")
        r.add_post(channel, _placeholder, name="update_interaction_channel")
        r.add_get(channel + "/Participants", _placeholder, name="list_interaction_participants")
        r.add_post(
            channel + "/Participants/{ut}", _placeholder, name="update_interaction_participant"
        )
        r.add_get("/v1/Conversations/{ch}", _placeholder, name="fetch_conversation")
        r.add_get("/__emulator/state", self._admin_state, name="admin_state")
        r.add_post("/__emulator/faults", self._admin_faults, name="admin_faults")
        app.on_response_prepare.append(self._stamp_date)
        return app

    # ------------------------------------------------------------- pipeline

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/__emulator/"):
            # Admin routes answer on any host (clients reach them at the loopback address).
            try:
                return await handler(request)
            except web.HTTPException as exc:
                return _http_error(exc)
        return await self._twilio(request, handler)

    async def _stamp_date(self, request: web.Request, response: web.StreamResponse) -> None:
        # aiohttp stamps Date from the real clock; every answer carries Twilio's instead.
        response.headers["Date"] = render.imf_fixdate(self.world.now())

    async def _twilio(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        world = self.world
        started = time.monotonic()
        seq = world.next_seq()
        raw_host = request.headers.get("Host", "")
        revoked = world.revoked_on_this_request()
        try:
            host: TwilioHost | HostRefused = parse_host(raw_host)
        except HostRefused as exc:
            host = exc
        route = request.match_info.route
        kind = route.name if route.name and request.match_info.http_exception is None else "other"
        on_its_host = (
            isinstance(host, TwilioHost) and product_for_path(request.path) == host.product
        )
        if not on_its_host:
            kind = "other"
        world.count(kind)
        query, bad_query = _parse_query(request)
        form, bad_body = await _read_form(request)
        if_match = request.headers.get("If-Match")
        principal = self._principal(request) if isinstance(host, TwilioHost) else None
        world.maybe_platform_event()
        account_sid: str | None = None
        if isinstance(host, HostRefused):
            # Not a Twilio product host that is served (the emulator's own address, a retired
            # or unknown host): nothing there answers any Twilio route (strict).
            outcome = _Outcome(error_response(404, 20404, str(host)), code=20404)
        elif principal is None or revoked or principal.region != host.region:
            # Bad or revoked credentials; or credentials of another region: error 20003 lists
            # "Attempted API Key is for the incorrect Twilio Region", and IE1 needs IE1
            # credentials (TWILIO_FACTS §6, §7).
            fault = "revoked" if principal is not None and revoked else None
            outcome = _Outcome(error_response(401, 20003, "Authenticate"), code=20003, fault=fault)
        elif not on_its_host:
            # A path sent to another product's host: 404/20404, as Twilio answers.
            account_sid = principal.account_sid
            outcome = _Outcome(error_response(404, 20404), code=20404)
        else:
            account_sid = principal.account_sid
            ctx = _Ctx(account_sid, query, form, if_match, host.base_url)
            outcome = await self._screened(
                request, handler, kind, principal, ctx, bad_query or bad_body
            )
        finished = time.monotonic()
        resp = outcome.response
        in_flight = 0 if account_sid is None else world.in_flight(account_sid) + 1
        resp.headers.setdefault("Twilio-Concurrent-Requests", str(in_flight))
        resp.headers["Twilio-Request-Duration"] = f"{finished - started:.3f}"
        status = 0 if outcome.drop else resp.status
        if status == 429:
            world.count("429")
        elif status >= 500:
            world.count("5xx")
        elif outcome.drop:
            world.count("dropped")
        world.log_request(
            LoggedRequest(
                seq=seq,
                started=started,
                finished=finished,
                method=request.method,
                path=request.path,
                query=query,
                form=form,
                if_match=if_match,
                status=status,
                code=outcome.code,
                account_sid=account_sid,
                fault=outcome.fault,
                host=raw_host,
                user_agent=request.headers.get("User-Agent", ""),
            )
        )
        if outcome.drop and request.transport is not None:
            # Close without answering; aiohttp then fails to write the response and drops it.
            request.transport.close()
        return resp

    async def _screened(
        self,
        request: web.Request,
        handler: Handler,
        kind: str,
        principal: Principal,
        ctx: _Ctx,
        malformed: ApiError | None,
    ) -> _Outcome:
        """Key permissions, then malformed requests, then the rate limits and the route."""
        refused = refusal(principal, kind)
        if refused is not None:
            resp = error_response(refused.status, refused.code, refused.message)
            return _Outcome(resp, code=refused.code)
        if malformed is not None:
            return _Outcome(json_response(malformed.body(), malformed.status), code=malformed.code)
        return await self._admitted(request, handler, kind, ctx)

    def _principal(self, request: web.Request) -> Principal | None:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
            return None
        username, sep, password = decoded.partition(":")
        if not sep:
            return None
        return self.world.principal(username, password)

    def _rate_limited(self, account_sid: str, faults: Faults) -> str | None:
        world = self.world
        if world.throttled_now():
            return "storm"
        limit = faults.concurrency_limit
        if limit is not None and world.in_flight(account_sid) >= limit:
            return "concurrency"
        rps = faults.rps_limit
        if rps is None:
            return None
        if self._bucket_faults is not faults:
            self._buckets.clear()
            self._bucket_faults = faults
        now = time.monotonic()
        bucket = self._buckets.get(account_sid)
        if bucket is None:
            bucket = self._buckets[account_sid] = _Bucket(rps, now)
        bucket.tokens = min(rps, bucket.tokens + (now - bucket.stamp) * rps)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            return "rps"
        bucket.tokens -= 1.0
        return None

    def _too_many(self, fault: str, faults: Faults) -> _Outcome:
        resp = error_response(429, 20429, "Too Many Requests")
        if faults.retry_after is not None:
            resp.headers["Retry-After"] = str(math.ceil(faults.retry_after))
        return _Outcome(resp, code=20429, fault=fault)

    async def _admitted(
        self, request: web.Request, handler: Handler, kind: str, ctx: _Ctx
    ) -> _Outcome:
        world = self.world
        faults = world.faults
        limit = limit_for(
            kind,
            ctx.account_sid,
            request.match_info.get("ws"),
            faults.taskrouter_limits,
            faults.taskrouter_window,
        )
        # Account-wide limits first, then TaskRouter's: an account-wide 429 spends no TaskRouter
        # budget, while a TaskRouter 429 has already spent its rps token (the stricter order;
        # Twilio does not say which limiter comes first).
        limited = self._rate_limited(ctx.account_sid, faults)
        remaining = None
        if limited is None and limit is not None:
            remaining = self._windows.admit(limit)
            limited = "taskrouter" if remaining is None else None
        if limited is not None:
            # The count the concurrency limiter compared: those in flight plus this one.
            concurrent = world.in_flight(ctx.account_sid) + 1
            outcome = self._too_many(limited, faults)
        else:
            # Counted on admission, this request included (TWILIO_FACTS §4.2): on every answer
            # that was not a concurrency 429 the value is at most concurrency_limit.
            concurrent = world.enter(ctx.account_sid)
            try:
                outcome = await self._process(request, handler, kind, ctx, faults)
            finally:
                world.leave(ctx.account_sid)
        headers = outcome.response.headers
        headers["Twilio-Concurrent-Requests"] = str(concurrent)
        if limit is not None:
            if remaining is None:
                remaining = self._windows.remaining(limit)
            headers.update(limit.headers(remaining))
        return outcome

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self.world.rand() < rate

    async def _process(
        self, request: web.Request, handler: Handler, kind: str, ctx: _Ctx, faults: Faults
    ) -> _Outcome:
        delay = faults.latency
        if faults.latency_jitter > 0:
            delay += self.world.rand() * faults.latency_jitter
        if self._chance(faults.spike_rate):
            delay += faults.spike_latency
        # Even without latency, yield once while counted as in flight: requests that arrive
        # together then overlap as they would at Twilio, so concurrency_limit can bite (stricter).
        await asyncio.sleep(delay if delay > 0 else 0)
        if self._chance(faults.error_rate):
            err = self.world.next_server_error()
            return _Outcome(error_response(err - 20000, err), code=err, fault="error")
        if self._chance(faults.html_rate):
            return _Outcome(web.Response(body=_HTML, content_type="text/html"), fault="html")
        write = request.method == "POST"
        if write and self._chance(faults.drop_before_write_rate):
            return _Outcome(web.Response(status=500), fault="drop_before_write", drop=True)
        resp: web.StreamResponse
        code: int | None
        try:
            twilio_handler = self._handlers.get(kind)
            if twilio_handler is None:
                resp = await handler(request)  # aiohttp raises its 404/405 here
            else:
                resp = await twilio_handler(request, ctx)
            code = None
        except ApiError as exc:
            resp = json_response(exc.body(), exc.status)
            code = exc.code
        except web.HTTPMethodNotAllowed:
            resp = error_response(405, 20004, "Method not allowed")
            code = 20004
        except web.HTTPException:
            resp = error_response(404, 20404)
            code = 20404
        for name, value in ctx.extra_headers.items():
            resp.headers[name] = value
        if write:
            if self._chance(faults.drop_after_write_rate):
                return _Outcome(resp, code=code, fault="drop_after_write", drop=True)
            if self._chance(faults.error_after_write_rate):
                return _Outcome(error_response(500, 20500), code=20500, fault="error_after_write")
            if self._chance(faults.html_after_write_rate):
                page = web.Response(body=_HTML, content_type="text/html")
                return _Outcome(page, fault="html_after_write")
            if self._chance(faults.garbled_after_write_rate):
                return _Outcome(_garbled(resp), fault="garbled_after_write")
        return _Outcome(resp, code=code)

    # ------------------------------------------------------------- Twilio handlers

    async def _list_workspaces(self, request: web.Request, ctx: _Ctx) -> web.Response:
        page = self.world.api_list_workspaces(ctx.account_sid, ctx.base, request.path, ctx.query)
        return json_response(page)

    async def _fetch_workspace(self, request: web.Request, ctx: _Ctx) -> web.Response:
        ws = self.world.api_fetch_workspace(ctx.account_sid, request.match_info["ws"], ctx.base)
        return json_response(ws)

    async def _list_task_queues(self, request: web.Request, ctx: _Ctx) -> web.Response:
        page = self.world.api_list_task_queues(
            ctx.account_sid, request.match_info["ws"], ctx.base, request.path, ctx.query
        )
        return json_response(page)

    async def _list_workflows(self, request: web.Request, ctx: _Ctx) -> web.Response:
        page = self.world.api_list_workflows(
            ctx.account_sid, request.match_info["ws"], ctx.base, request.path, ctx.query
        )
        return json_response(page)

    async def _list_tasks(self, request: web.Request, ctx: _Ctx) -> web.Response:
        page = self.world.api_list_tasks(
            ctx.account_sid, request.match_info["ws"], ctx.base, request.path, ctx.query
        )
        return json_response(page)

    async def _fetch_task(self, request: web.Request, ctx: _Ctx) -> web.Response:
        task, etag = self.world.api_fetch_task(
            ctx.account_sid, request.match_info["ws"], request.match_info["task"], ctx.base
        )
        # The ETag is the bare revision number (e.g. 3), unquoted: Twilio's format is undocumented
        # and Twilio's own code JSON.parse()s it. Clients must echo it verbatim in If-Match.
        return json_response(task, headers={"ETag": etag})

    async def _update_task(self, request: web.Request, ctx: _Ctx) -> web.Response:
        task, etag = self.world.api_update_task(
            ctx.account_sid,
            request.match_info["ws"],
            request.match_info["task"],
            ctx.base,
            ctx.form,
            ctx.if_match,
        )
        return json_response(task, headers={"ETag": etag})

    async def _fetch_account(self, request: web.Request, ctx: _Ctx) -> web.Response:
        return json_response(
            self.world.api_fetch_account(ctx.account_sid, request.match_info["ac"])
        )

    async def _fetch_call(self, request: web.Request, ctx: _Ctx) -> web.Response:
        call = self.world.api_fetch_call(
            ctx.account_sid, request.match_info["ac"], request.match_info["ca"]
        )
        return json_response(call)

    async def _fetch_conference(self, request: web.Request, ctx: _Ctx) -> web.Response:
        m = request.match_info
        return json_response(self.world.api_fetch_conference(ctx.account_sid, m["ac"], m["cf"]))

    async def _list_conferences(self, request: web.Request, ctx: _Ctx) -> web.Response:
        page = self.world.api_list_conferences(
            ctx.account_sid, request.match_info["ac"], request.path, ctx.query
        )
        return json_response(page)

    async def _fetch_interaction_channel(self, request: web.Request, ctx: _Ctx) -> web.Response:
        m = request.match_info
        channel = self.world.api_fetch_interaction_channel(
            ctx.account_sid, m["kd"], m["uo"], ctx.base
        )
        return json_response(channel)

    async def _update_interaction_channel(self, request: web.Request, ctx: _Ctx) -> web.Response:
        m = request.match_info
        channel = self.world.api_update_interaction_channel(
            ctx.account_sid, m["kd"], m["uo"], ctx.base, ctx.form
        )
        return json_response(channel)

    async def _list_interaction_participants(self, request: web.Request, ctx: _Ctx) -> web.Response:
        m = request.match_info
        page = self.world.api_list_interaction_participants(
            ctx.account_sid, m["kd"], m["uo"], ctx.base, request.path, ctx.query
        )
        return json_response(page)

    async def _update_interaction_participant(
        self, request: web.Request, ctx: _Ctx
    ) -> web.Response:
        m = request.match_info
        participant = self.world.api_update_interaction_participant(
            ctx.account_sid, m["kd"], m["uo"], m["ut"], ctx.base, ctx.form
        )
        return json_response(participant)

    async def _fetch_conversation(self, request: web.Request, ctx: _Ctx) -> web.Response:
        conversation = self.world.api_fetch_conversation(
            ctx.account_sid, request.match_info["ch"], ctx.base
        )
        return json_response(conversation)

    # ------------------------------------------------------------- admin handlers

    async def _admin_state(self, request: web.Request) -> web.Response:
        state = self.world.state_json()
        state["faults"] = self.world.faults.to_dict()
        return json_response(state)

    async def _admin_faults(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            faults = Faults.from_mapping(data)
        except ValueError as exc:
            return error_response(400, 20001, str(exc))
        self.world.set_faults(faults)
        return json_response({"faults": faults.to_dict()})
