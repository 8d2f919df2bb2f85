"""Property-based: requests built from the official OpenAPI copies never get a 5xx.

Hypothesis reads every operation in ``tests/reference/twilio-oai/`` and builds requests for it:
path parameters that name existing resources, match the SID pattern or are random text; the
spec's query and form parameters with values valid for their schema or random; random extra
parameters, content types, bodies, hosts, credentials and methods. Each goes over real HTTP
(``http.client``, so malformed percent-encoding and raw bytes reach the server unaltered) to one
emulator with no fault knobs on. Every answer must be < 500, every error must carry Twilio's
JSON error body, and every success must be JSON.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stuck_tasks.emulator import PERMISSIONS, Emulator

SPECS = Path(__file__).parent / "reference" / "twilio-oai"
METHODS = ("get", "post", "delete")
ERROR_KEYS = {"code", "message", "more_info", "status"}


@dataclass(frozen=True)
class Operation:
    spec: dict[str, Any]
    path: str
    method: str
    host: str
    params: tuple[dict[str, Any], ...]
    form: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.path}"


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def operations() -> list[Operation]:
    ops = []
    for file in sorted(SPECS.glob("*.json")):
        spec = json.loads(file.read_text())
        for path, item in spec["paths"].items():
            servers = item.get("servers") or spec["servers"]
            host = urlsplit(servers[0]["url"]).netloc
            for method in METHODS:
                op = item.get(method)
                if op is None:
                    continue
                body = op.get("requestBody", {}).get("content", {})
                form_schema = body.get("application/x-www-form-urlencoded", {}).get("schema", {})
                ops.append(
                    Operation(
                        spec,
                        path,
                        method,
                        host,
                        tuple(op.get("parameters", [])),
                        dict(form_schema.get("properties", {})),
                    )
                )
    return ops


OPERATIONS = operations()


def test_every_operation_of_the_copies_is_exercised() -> None:
    assert len(OPERATIONS) == 14
    assert {op.host for op in OPERATIONS} == {
        "taskrouter.twilio.com",
        "api.twilio.com",
        "flex-api.twilio.com",
        "conversations.twilio.com",
    }


# ---------------------------------------------------------------- the emulated world


@dataclass
class Target:
    emu: Emulator
    host: str
    port: int
    sids: dict[str, list[str]]
    auths: dict[str, tuple[str, str] | None] = field(default_factory=dict)


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    with Emulator() as emu:
        acct = emu.add_account("Fuzz")
        other = emu.add_account("Other")
        ws = emu.add_workspace(acct.sid).sid
        sids: dict[str, list[str]] = {"AC": [acct.sid, other.sid], "WS": [ws]}
        statuses = ("pending", "reserved", "assigned", "wrapping", "completed", "canceled")
        for i in range(60):
            call = emu.add_call(acct.sid, ("completed", "in-progress", "busy")[i % 3])
            sids.setdefault("CA", []).append(call)
            attrs = {"call_sid": call} if i % 4 else "not json"
            task = emu.add_task(ws, statuses[i % 6], attributes=attrs, age=timedelta(minutes=i))
            sids.setdefault("WT", []).append(task)
        for status in ("init", "in-progress", "completed"):
            sids.setdefault("CF", []).append(
                emu.add_conference(acct.sid, friendly_name="WTroom", status=status)
            )
        for i in range(20):
            refs = emu.add_interaction(
                acct.sid,
                workspace_sid=ws,
                channel_status=("active", "closed", "inactive", "failed")[i % 4],
                task={"status": ("assigned", "reserved", "wrapping")[i % 3]},
                agent_status=None if i % 5 == 0 else "joined",
            )
            view = emu.interaction_channel(refs.interaction_sid, refs.channel_sid)
            # Aligned lists: KD[i], UO[i] and UT[i] belong together (the agent, else the customer).
            sids.setdefault("KD", []).append(refs.interaction_sid)
            sids.setdefault("UO", []).append(refs.channel_sid)
            sids.setdefault("UT", []).append(refs.agent_participant_sid or view.participants[0].sid)
            sids.setdefault("CH", []).append(refs.conversation_sid or "")
        keys = {kind: emu.add_api_key(acct.sid, kind=kind) for kind in ("main", "standard")}
        every = sorted({p for p in PERMISSIONS.values() if p is not None})
        keys["restricted"] = emu.add_api_key(acct.sid, kind="restricted", permissions=every)
        keys["bare"] = emu.add_api_key(acct.sid, kind="restricted")
        address = urlsplit(emu.base_url)
        assert address.hostname is not None
        assert address.port is not None
        t = Target(emu, address.hostname, address.port, sids)
        t.auths = {
            "token": (acct.sid, acct.auth_token),
            "other": (other.sid, other.auth_token),
            "wrong": (acct.sid, "wrong"),
            "none": None,
            **{kind: (key.sid, key.secret) for kind, key in keys.items()},
        }
        yield t


# ---------------------------------------------------------------- strategies

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
HUGE = st.integers(min_value=1, max_value=5000).map(lambda n: "9" * n)
ANY_VALUE = st.one_of(
    TEXT,
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["", "null", "true", "NaN", "-0", "1e3", "[]", "{}", '{"status":"closed"}']),
    HUGE,
)


def mostly(percent: int, usual: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
    """``usual`` in about ``percent`` % of the draws, else ``other``."""
    return st.integers(0, 99).flatmap(lambda n: usual if n < percent else other)


def sid_prefix(schema: dict[str, Any]) -> str:
    prefix = re.match(r"\^([A-Z]{2})", schema.get("pattern", ""))
    return prefix.group(1) if prefix else "CH"  # Conversations' {Sid} has no pattern


def sid_values(target: Target, schema: dict[str, Any]) -> st.SearchStrategy[str]:
    """An existing SID, one matching the spec's pattern, or random text."""
    known = target.sids.get(sid_prefix(schema), [])
    choices = [st.sampled_from(known)] if known else []
    choices.append(TEXT.filter(bool))
    if "pattern" in schema:
        choices.append(st.from_regex(schema["pattern"], fullmatch=True))
    return st.one_of(*choices)


@st.composite
def path_values(draw: Any, op: Operation, target: Target) -> dict[str, str]:
    """Mostly the SIDs of one coherent set of existing resources (so routes succeed)."""
    params = [p for p in op.params if p["in"] == "path"]
    if draw(st.integers(0, 99)) < 80:
        i = draw(st.integers(0, 59))
        out = {}
        for p in params:
            prefix = sid_prefix(p.get("schema", {}))
            known = target.sids[prefix]
            out[p["name"]] = known[0] if prefix == "AC" else known[i % len(known)]
        return out
    return {p["name"]: draw(sid_values(target, p.get("schema", {}))) for p in params}


def valid_values(
    spec: dict[str, Any], schema: dict[str, Any], target: Target
) -> st.SearchStrategy[Any]:
    """A value valid for ``schema`` (a list of them for arrays)."""
    schema = resolve(spec, schema)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        low, high = schema.get("minimum", -(2**31)), schema.get("maximum", 2**31)
        return st.integers(min_value=low, max_value=high).map(str)
    if kind == "boolean":
        return st.sampled_from(["true", "false"])
    if kind == "array":
        return st.lists(valid_values(spec, schema.get("items", {}), target), max_size=3)
    if "pattern" in schema:
        return sid_values(target, schema)
    fmt = schema.get("format")
    if fmt == "date-time":
        return st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"))
    if fmt == "date":
        return st.dates().map(str)
    if fmt == "phone-number":
        return st.from_regex(r"\+1[0-9]{10}", fullmatch=True)
    return TEXT


def encode(value: str, *, corrupt: bool) -> str:
    out = quote(value, safe="")
    return out + "%Z" if corrupt else out


@st.composite
def pairs(draw: Any, op: Operation, target: Target, specs: dict[str, Any]) -> list[tuple[str, str]]:
    """The spec's parameters (each in about a third of the requests, mostly with a valid
    value) and now and then a random one, in random order."""
    out: list[tuple[str, str]] = []
    for name, schema in specs.items():
        if draw(st.integers(0, 2)) != 0:
            continue
        value = draw(mostly(80, valid_values(op.spec, schema, target), ANY_VALUE))
        out += [(name, v) for v in (value if isinstance(value, list) else [value])]
    out += draw(mostly(85, st.just([]), st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=2)))
    return draw(st.permutations(out))


def urlencoded(params: list[tuple[str, str]], *, corrupt: bool) -> str:
    return "&".join(f"{encode(k, corrupt=corrupt)}={encode(v, corrupt=False)}" for k, v in params)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None


CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "application/x-www-form-urlencoded; charset=latin-1",
    "application/json",
    "multipart/form-data; boundary=xyz",
    "text/plain",
    ";;;",
    "application/x-www-form-urlencoded; charset",
    "",
]
OTHER_HOSTS = [
    "api.twilio.com",
    "taskrouter.dublin.ie1.twilio.com",
    "api.ie1.twilio.com",
    "example.org",
]
BAD_AUTHORIZATION = ["Basic", "Basic ???", "Bearer x", "Basic é", "Basic " + "QQ==" * 3]


@st.composite
def requests_for(draw: Any, target: Target) -> Request:
    """A request for one of the spec's operations; each part is mostly valid."""
    op = draw(st.sampled_from(OPERATIONS))
    path = op.path
    for name, value in draw(path_values(op, target)).items():
        path = path.replace("{" + name + "}", quote(value, safe=""))
    query_specs = {p["name"]: p.get("schema", {}) for p in op.params if p["in"] == "query"}
    query = draw(pairs(op, target, query_specs))
    if query:
        path += "?" + urlencoded(query, corrupt=draw(st.integers(0, 19)) == 0)
    any_method = st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"])
    method = draw(mostly(90, st.just(op.method.upper()), any_method))
    loopback = f"{target.host}:{target.port}"
    host = draw(mostly(90, st.just(op.host), st.sampled_from([*OTHER_HOSTS, loopback])))
    headers = {"Host": host}
    auth = target.auths[draw(mostly(80, st.just("token"), st.sampled_from(sorted(target.auths))))]
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    elif draw(st.booleans()):
        headers["Authorization"] = draw(st.sampled_from(BAD_AUTHORIZATION))
    if draw(st.integers(0, 4)) == 0:
        headers["If-Match"] = draw(
            st.one_of(st.integers(0, 5).map(str), st.sampled_from(["*", '"0"', ""]))
        )
    body: bytes | None = None
    if method in ("POST", "PUT", "PATCH"):
        kind = draw(mostly(85, st.just("form"), st.sampled_from(["json", "bytes", "empty"])))
        if kind == "form":
            form = draw(pairs(op, target, op.form))
            body = urlencoded(form, corrupt=draw(st.integers(0, 19)) == 0).encode()
            headers["Content-Type"] = draw(
                mostly(90, st.sampled_from(CONTENT_TYPES[:2]), st.sampled_from(CONTENT_TYPES))
            )
        elif kind == "json":
            body = json.dumps(dict(draw(pairs(op, target, op.form)))).encode()
            headers["Content-Type"] = "application/json"
        elif kind == "bytes":
            body = draw(st.binary(max_size=200))
            headers["Content-Type"] = draw(st.sampled_from(CONTENT_TYPES))
        if headers.get("Content-Type") == "":
            del headers["Content-Type"]
        if draw(st.integers(0, 19)) == 0:
            headers["Content-Encoding"] = draw(st.sampled_from(["gzip", "br", "identity", "x"]))
    return Request(method, path, headers, body)


@st.composite
def wild_requests(draw: Any, target: Target) -> Request:
    """Paths and methods the specs do not have."""
    segments = draw(
        st.lists(
            st.one_of(
                st.sampled_from(
                    [
                        "v1",
                        "2010-04-01",
                        "Workspaces",
                        "Tasks",
                        "Accounts",
                        "Calls",
                        "Interactions",
                        "Channels",
                        "Participants",
                        "Conversations",
                        "Reservations",
                        "Workers",
                        ".json",
                        "__emulator",
                    ]
                ),
                st.sampled_from([s for values in target.sids.values() for s in values[:2]]),
                TEXT.map(lambda t: quote(t, safe="")),
            ),
            max_size=7,
        )
    )
    path = "/" + "/".join(segments)
    method = draw(st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"]))
    host = draw(
        st.sampled_from(
            [
                "taskrouter.twilio.com",
                "api.twilio.com",
                "flex-api.twilio.com",
                "conversations.twilio.com",
            ]
        )
    )
    token = base64.b64encode(":".join(target.auths["token"] or ("", "")).encode()).decode()
    headers = {"Host": host, "Authorization": "Basic " + token}
    body = None
    if method in ("POST", "PUT", "PATCH"):
        body = draw(st.binary(max_size=100))
        headers["Content-Type"] = draw(st.sampled_from(CONTENT_TYPES))
    return Request(method, path, headers, body)


# ---------------------------------------------------------------- the properties


def send(target: Target, request: Request) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(target.host, target.port, timeout=10)
    try:
        conn.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
        headers = dict(request.headers)
        if request.body is not None:
            headers["Content-Length"] = str(len(request.body))
        for name, value in headers.items():
            conn.putheader(name, value.encode("utf-8"))
        conn.endheaders(request.body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def check(target: Target, request: Request) -> None:
    status, headers, body = send(target, request)
    where = f"{request.method} {request.path} {request.headers} {request.body!r:.200}"
    assert status < 500, f"{status} for {where}: {body!r:.300}"
    assert "date" in headers
    if request.path.startswith("/__emulator/") and status < 400:
        return
    assert headers.get("content-type", "").startswith("application/json"), where
    payload = json.loads(body)
    if status >= 400:
        assert set(payload) == ERROR_KEYS, where
        assert payload["status"] == status, where
        assert isinstance(payload["code"], int), where
        assert isinstance(payload["message"], str), where
        assert payload["more_info"] == f"https://www.twilio.com/docs/errors/{payload['code']}"


FUZZ = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_spec_driven_requests_never_get_a_5xx(target: Target) -> None:
    before = target.emu.stats()

    @FUZZ
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        check(target, data.draw(requests_for(target)))

    prop()
    after = target.emu.stats()
    assert after["5xx"] == 0
    # The mostly-valid requests did reach the handlers, writes included.
    for kind in ("list_tasks", "update_task", "update_interaction_channel", "fetch_conversation"):
        assert after[kind] > before[kind], kind


def test_unknown_routes_and_methods_never_get_a_5xx(target: Target) -> None:
    @settings(FUZZ, max_examples=200)
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        check(target, data.draw(wild_requests(target)))

    prop()
