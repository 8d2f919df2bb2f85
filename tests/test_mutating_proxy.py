"""The mutating proxy itself: transparent with an empty plan, and each mutation does what it says.

A plain aiohttp client talks to the proxy in front of a running emulator, connecting to the
proxy's loopback address and naming the Twilio host it means in ``Host`` (the emulator answers
404 to a Twilio route asked of any other host), as the tool does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from conftest import World, make_world
from mutating_proxy import (
    EACH,
    FOREIGN_MARKER,
    HTML_PAGE,
    Always,
    DeepNesting,
    DeleteKey,
    Drop,
    EmptyBody,
    Every,
    From,
    Html,
    HugeBody,
    MutatingProxy,
    Mutation,
    NextPage,
    Nth,
    NullEverywhere,
    Plan,
    Repeat,
    Rule,
    Select,
    SetHeader,
    SetValue,
    Status,
    Trickle,
    Truncate,
    origin_form,
    route_kind,
    strip_marker,
)
from stuck_tasks.emulator import Emulator, Faults

TWILIO_HOST = "taskrouter.twilio.com"
API_HOST = "api.twilio.com"
# The read-only emulator's clock stands still, so two reads of one task are the same bytes (a
# task's "age" counts seconds).
FROZEN_NOW = datetime(2026, 12, 1, 11, 20, 32, tzinfo=timezone.utc)
# Headers that differ between any two answers, proxied or not.
CANCEL = {"AssignmentStatus": "canceled", "Reason": "stuck"}
VOLATILE = {"date", "twilio-request-duration", "twilio-concurrent-requests"}


@dataclass(frozen=True)
class Got:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    seconds_to_headers: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Site:
    """A seeded emulator and how to address it: paths, credentials, some SIDs."""

    world: World
    tasks: list[str]
    calls: list[str]

    @property
    def auth(self) -> str:
        raw = f"{self.world.account_sid}:{self.world.auth_token}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def tasks_path(self, sid: str = "") -> str:
        path = f"/v1/Workspaces/{self.world.workspace_sid}/Tasks"
        return f"{path}/{sid}" if sid else path

    def call_path(self, sid: str) -> str:
        return f"/2010-04-01/Accounts/{self.world.account_sid}/Calls/{sid}.json"

    def conferences_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.world.account_sid}/Conferences.json"

    def get(self, base: str, path: str, **kwargs: Any) -> Got:
        if path.startswith("/2010-04-01/"):
            kwargs.setdefault("host", API_HOST)
        return request("GET", base + path, self.auth, **kwargs)

    def post(self, base: str, path: str, data: dict[str, str], **kwargs: Any) -> Got:
        return request("POST", base + path, self.auth, data=data, **kwargs)


def request(
    method: str,
    url: str,
    auth: str | None,
    *,
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    host: str = TWILIO_HOST,
    timeout: float = 10,
) -> Got:
    """One request with a fresh aiohttp session; the client's exceptions propagate."""
    sent = {"Host": host, **(headers or {})}
    if auth is not None:
        sent["Authorization"] = auth

    async def go() -> Got:
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            started = time.monotonic()
            async with session.request(method, url, data=data, headers=sent) as resp:
                at_headers = time.monotonic() - started
                body = await resp.read()
                return Got(resp.status, resp.headers, body, at_headers)

    return asyncio.run(go())


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """Read-only tests share one emulator, its clock frozen: 5 pending voice tasks and 3
    completed conferences, 2 to a page."""
    emu = Emulator(Faults(max_page_size=2), clock=lambda: FROZEN_NOW)
    account = emu.add_account(friendly_name="Acme Contact Center")
    workspace = emu.add_workspace(account.sid, friendly_name="Acme Support")
    for i in range(3):
        emu.add_conference(
            account.sid, friendly_name="WT-conf", status="completed", ended_ago=timedelta(hours=i)
        )
    emu.start()
    w = World(emu, account.sid, account.auth_token, workspace.sid, workspace.friendly_name)
    yield _seed(w)
    emu.stop()


@pytest.fixture
def fresh() -> Iterator[Site]:
    """For tests that write."""
    w = make_world()
    yield _seed(w)
    w.emu.stop()


def _seed(w: World) -> Site:
    calls = [w.emu.add_call(w.account_sid, "completed") for _ in range(5)]
    tasks = [
        w.emu.add_task(
            w.workspace_sid, "pending", attributes={"call_sid": c}, age=timedelta(minutes=40 - i)
        )
        for i, c in enumerate(calls)
    ]
    return Site(w, tasks, calls)


def proxied(site: Site, *rules: tuple[Select, Mutation]) -> MutatingProxy:
    return MutatingProxy(site.world.emu.base_url, Plan(tuple(Rule(s, m) for s, m in rules)))


def stable_headers(got: Got) -> list[tuple[str, str]]:
    return sorted((k.lower(), v) for k, v in got.headers.items() if k.lower() not in VOLATILE)


# ---------------------------------------------------------------- request kinds and selectors


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/v1/Workspaces", "list_workspaces"),
        ("GET", "/v1/Workspaces/WS1", "fetch_workspace"),
        ("GET", "/v1/Workspaces/WS1/Tasks", "list_tasks"),
        ("GET", "/v1/Workspaces/WS1/Tasks/WT1", "fetch_task"),
        ("POST", "/v1/Workspaces/WS1/Tasks/WT1", "update_task"),
        ("GET", "/2010-04-01/Accounts/AC1.json", "fetch_account"),
        ("GET", "/2010-04-01/Accounts/AC1/Calls/CA1.json", "fetch_call"),
        ("GET", "/2010-04-01/Accounts/AC1/Conferences.json", "list_conferences"),
        ("GET", "/2010-04-01/Accounts/AC1/Conferences/CF1.json", "fetch_conference"),
        ("GET", "/v1/Interactions/KD1/Channels/UO1", "fetch_channel"),
        ("POST", "/v1/Interactions/KD1/Channels/UO1", "update_channel"),
        ("GET", "/v1/Interactions/KD1/Channels/UO1/Participants", "list_participants"),
        ("POST", "/v1/Interactions/KD1/Channels/UO1/Participants/UT1", "update_participant"),
        ("GET", "/v1/Conversations/CH1", "fetch_conversation"),
        ("GET", "/v1/Elsewhere", "other"),
        ("POST", "/v1/Workspaces/WS1/Tasks", "other"),
    ],
)
def test_route_kind_names_each_twilio_route(method: str, path: str, kind: str):
    assert route_kind(method, path) == kind


def test_selectors_pick_by_kind_group_method_and_occurrence():
    assert Select("fetch_task").matches("GET", "fetch_task")
    assert not Select("fetch_task").matches("GET", "fetch_call")
    assert Select("interactions").matches("POST", "update_participant")
    assert Select("writes").matches("POST", "update_task")
    assert not Select(method="POST").matches("GET", "fetch_task")
    assert Select().matches("GET", "other")
    assert [n for n in range(1, 8) if Select(when=Nth(3)).fires(n)] == [3]
    assert [n for n in range(1, 8) if Select(when=Every(3)).fires(n)] == [3, 6]
    assert [n for n in range(1, 8) if Select(when=From(5)).fires(n)] == [5, 6, 7]
    assert all(Select(when=Always()).fires(n) for n in range(1, 8))
    with pytest.raises(ValueError, match="unknown request kind"):
        Select("fetch_tasks")


def test_each_rule_counts_its_own_matches_and_the_first_that_fires_wins(site: Site):
    rules = ((Select("fetch_task", when=Nth(2)), Status(500)), (Select("fetch_task"), Status(404)))
    with proxied(site, *rules) as proxy:
        statuses = [site.get(proxy.base_url, site.tasks_path(t)).status for t in site.tasks[:3]]
        site.get(proxy.base_url, site.call_path(site.calls[0]))
    assert statuses == [404, 500, 404]
    assert [(e.kind, e.rule, e.status) for e in proxy.log][-1] == ("fetch_call", None, 200)
    assert [(e.kind, e.rule) for e in proxy.log] == [
        ("fetch_task", 1),
        ("fetch_task", 0),
        ("fetch_task", 1),
        ("fetch_call", None),
    ]


# ---------------------------------------------------------------- transparency


def test_an_empty_plan_is_transparent_byte_for_byte(site: Site):
    first_page = site.tasks_path() + "?AssignmentStatus=pending&PageSize=2"
    wrong_etag = {"If-Match": "999"}
    api = {"host": API_HOST}
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", first_page, {}),
        ("GET", site.tasks_path(site.tasks[0]), {}),
        ("GET", site.call_path(site.calls[0]), api),
        ("GET", site.conferences_path() + "?Status=completed&PageSize=2", api),
        ("GET", f"/2010-04-01/Accounts/{site.world.account_sid}.json", api),
        ("GET", f"/v1/Workspaces/{site.world.workspace_sid}", {}),
        ("GET", site.tasks_path("WT" + "0" * 32), {}),
        ("GET", site.call_path(site.calls[0]), {}),  # a v2010 path on the TaskRouter host: 404
        ("POST", site.tasks_path(site.tasks[0]), {"headers": wrong_etag}),
    ]
    emu = site.world.emu.base_url
    with MutatingProxy(emu) as proxy:
        for method, path, extra in cases:
            data = CANCEL if method == "POST" else None
            direct = request(method, emu + path, site.auth, data=data, **extra)
            through = request(method, proxy.base_url + path, site.auth, data=data, **extra)
            assert (through.status, through.body) == (direct.status, direct.body), path
            assert stable_headers(through) == stable_headers(direct), path
        unauthenticated = request("GET", proxy.base_url + first_page, None)
    assert unauthenticated.status == 401
    assert [e.status for e in proxy.log] == [200, 200, 200, 200, 200, 200, 404, 404, 412, 401]
    assert all(e.mutation is None and e.status == e.upstream_status for e in proxy.log)


def test_host_and_authorization_reach_upstream_unchanged(site: Site):
    emu = site.world.emu
    emu.clear_request_log()
    regional = "taskrouter.dublin.ie1.twilio.com"
    with MutatingProxy(emu.base_url) as proxy:
        itself = proxy.base_url.removeprefix("http://")
        page = site.get(proxy.base_url, site.tasks_path() + "?PageSize=2").json()
        call = site.get(proxy.base_url, site.call_path(site.calls[0])).json()
        loopback = site.get(proxy.base_url, site.tasks_path(), host=itself)
        elsewhere = site.get(proxy.base_url, site.tasks_path(), host=regional)
        bad = request("GET", proxy.base_url + site.tasks_path(), "Basic eDp5")
    # The emulator renders its URLs from the Twilio host it was sent, always https.
    assert page["meta"]["url"].startswith(f"https://{TWILIO_HOST}/v1/Workspaces/")
    assert page["meta"]["next_page_url"].startswith(f"https://{TWILIO_HOST}/v1/Workspaces/")
    assert call["uri"].startswith("/2010-04-01/Accounts/")
    # A loopback Host is not Twilio's: 404 for a Twilio route, as the emulator answers directly.
    assert loopback.status == 404
    # Another region's host reaches the emulator as such: this account's token is US1's.
    assert elsewhere.status == 401
    assert bad.status == 401
    sent = [TWILIO_HOST, API_HOST, itself, regional, TWILIO_HOST]
    assert [e.host for e in proxy.log] == sent
    assert [r.host for r in emu.request_log] == sent


def test_an_absolute_form_request_target_goes_upstream_as_its_path(site: Site):
    path = site.tasks_path(site.tasks[0])
    assert origin_form(f"https://{TWILIO_HOST}{path}?a=1") == f"{path}?a=1"
    assert origin_form(f"{path}?a=1") == f"{path}?a=1"
    assert origin_form("//evil.example.com/x") == "//evil.example.com/x"

    async def absolute_form(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET https://{TWILIO_HOST}{path} HTTP/1.1\r\nHost: {TWILIO_HOST}\r\n"
            f"Authorization: {site.auth}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await reader.read()
        writer.close()
        return answer

    with MutatingProxy(site.world.emu.base_url) as proxy:
        port = int(proxy.base_url.rsplit(":", 1)[1])
        answer = asyncio.run(absolute_form(port))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body)["sid"] == site.tasks[0]
    assert [(e.kind, e.status) for e in proxy.log] == [("fetch_task", 200)]


def test_a_write_goes_through_with_its_form_and_if_match(fresh: Site):
    task = fresh.tasks[0]
    with MutatingProxy(fresh.world.emu.base_url) as proxy:
        etag = fresh.get(proxy.base_url, fresh.tasks_path(task)).headers["ETag"]
        stale = fresh.post(
            proxy.base_url,
            fresh.tasks_path(task),
            {"AssignmentStatus": "canceled", "Reason": "x"},
            headers={"If-Match": str(int(etag) + 1)},
        )
        done = fresh.post(
            proxy.base_url,
            fresh.tasks_path(task),
            {"AssignmentStatus": "canceled", "Reason": "stuck"},
            headers={"If-Match": etag},
        )
    assert stale.status == 412
    assert done.status == 200
    assert done.json()["assignment_status"] == "canceled"
    (write,) = fresh.world.emu.mutations
    assert (write.task_sid, write.after_status, write.reason) == (task, "canceled", "stuck")


# ---------------------------------------------------------------- JSON mutations


def one(site: Site, path: str, select: Select, mutation: Mutation) -> tuple[Got, MutatingProxy]:
    with proxied(site, (select, mutation)) as proxy:
        got = site.get(proxy.base_url, path)
    return got, proxy


def test_set_value_changes_type_and_shape_at_a_path(site: Site):
    task = site.tasks_path(site.tasks[0])
    got, _ = one(site, task, Select("fetch_task"), SetValue(("attributes",), {"call_sid": "x"}))
    assert got.json()["attributes"] == {"call_sid": "x"}
    assert got.headers["ETag"] == "0"  # headers other than Content-Type are kept

    got, _ = one(site, site.call_path(site.calls[0]), Select(), SetValue(("status",), ["done"]))
    assert got.json()["status"] == ["done"]
    assert got.json()["sid"] == site.calls[0]  # the call itself (on api.twilio.com)

    got, _ = one(site, site.tasks_path(), Select(), SetValue(("tasks", EACH), 7))
    assert got.json()["tasks"] == [7, 7]

    got, _ = one(site, site.tasks_path(), Select(), SetValue(("meta", "next_page_url"), 3))
    assert got.json()["meta"]["next_page_url"] == 3

    got, _ = one(site, task, Select(), SetValue(("zz_unknown",), {"a": [1]}))
    assert got.json()["zz_unknown"] == {"a": [1]}
    assert got.json()["sid"] == site.tasks[0]


def test_set_value_on_a_missing_path_leaves_the_answer_alone_and_says_so(site: Site):
    path = site.tasks_path(site.tasks[0])
    direct = site.get(site.world.emu.base_url, path)
    got, proxy = one(site, path, Select(), SetValue(("links", "nope", "deeper"), 1))
    assert got.body == direct.body
    (exchange,) = proxy.log
    assert exchange.note.startswith("unchanged: no links/nope/deeper")
    assert proxy.applied() == []


def test_delete_key_removes_sid_or_meta(site: Site):
    got, _ = one(site, site.tasks_path(site.tasks[0]), Select(), DeleteKey(("sid",)))
    assert "sid" not in got.json()
    assert "assignment_status" in got.json()
    got, _ = one(site, site.tasks_path(), Select(), DeleteKey(("meta",)))
    assert set(got.json()) == {"tasks"}
    got, _ = one(site, site.tasks_path(), Select(), DeleteKey(("tasks", EACH, "sid")))
    assert [t.get("sid") for t in got.json()["tasks"]] == [None, None]


def test_delete_key_removes_list_rows(site: Site):
    got, _ = one(site, site.tasks_path(), Select(), DeleteKey(("tasks", 0)))
    assert [t["sid"] for t in got.json()["tasks"]] == site.tasks[1:2]
    assert got.json()["meta"]["next_page_url"]  # the page still says there is more
    got, _ = one(site, site.tasks_path(), Select(), DeleteKey(("tasks", -1)))
    assert [t["sid"] for t in got.json()["tasks"]] == site.tasks[0:1]
    got, _ = one(site, site.tasks_path(), Select(), DeleteKey(("tasks", EACH)))
    assert got.json()["tasks"] == []


def test_null_everywhere_keeps_the_shape(site: Site):
    got, _ = one(site, site.tasks_path(), Select(), NullEverywhere())
    doc = got.json()
    assert len(doc["tasks"]) == 2
    assert doc["tasks"][0]["sid"] is None
    assert doc["meta"]["next_page_url"] is None
    assert all(v is None for v in doc["meta"].values())


def test_next_page_same_loops_on_the_page_as_the_client_meant_it(site: Site):
    path = site.tasks_path() + "?PageSize=2"
    got, _ = one(site, path, Select("list_tasks"), NextPage("same"))
    assert got.json()["meta"]["next_page_url"] == f"https://{TWILIO_HOST}{path}"
    # v2010 lists name their next page relative to the API host.
    path = site.conferences_path() + "?Status=completed&PageSize=2"
    got, _ = one(site, path, Select("list_conferences"), NextPage("same"))
    assert got.json()["next_page_uri"] == path
    assert "meta" not in got.json()


FOREIGN = [
    # (NextPage, the URL's scheme and authority, its host as a client parses it)
    (NextPage("foreign"), "https://evil.example.com", "evil.example.com"),
    (
        NextPage("foreign", "taskrouter.twilio.com.evil.example.com"),
        "https://taskrouter.twilio.com.evil.example.com",
        "taskrouter.twilio.com.evil.example.com",
    ),
    (
        NextPage("foreign", "taskrouter.twilio.com@evil.example.com"),
        "https://taskrouter.twilio.com@evil.example.com",
        "evil.example.com",
    ),
    (
        NextPage("foreign", "taskrouter.dublin.ie1.twilio.com"),
        "https://taskrouter.dublin.ie1.twilio.com",
        "taskrouter.dublin.ie1.twilio.com",
    ),
    (NextPage("foreign", f"{TWILIO_HOST}:8443"), f"https://{TWILIO_HOST}:8443", TWILIO_HOST),
    (NextPage("foreign", None, "http"), f"http://{TWILIO_HOST}", TWILIO_HOST),
]


@pytest.mark.parametrize(("mutation", "origin", "hostname"), FOREIGN)
def test_next_page_foreign_points_abroad_and_a_client_that_follows_is_seen(
    site: Site, mutation: NextPage, origin: str, hostname: str
):
    path = site.tasks_path() + "?PageSize=2"
    real = site.get(site.world.emu.base_url, path).json()["meta"]["next_page_url"]
    with proxied(site, (Select("list_tasks", when=Nth(1)), mutation)) as proxy:
        first = site.get(proxy.base_url, path).json()
        foreign = first["meta"]["next_page_url"]
        parts = urlsplit(foreign)
        # A client that keeps only the path and query (as a base-URL rewrite does) and names the
        # URL's host lands back on the proxy, which sees it.
        second = site.get(proxy.base_url, f"{parts.path}?{parts.query}", host=TWILIO_HOST).json()
    assert foreign.startswith(origin + "/v1/Workspaces/")
    assert parts.hostname == hostname
    # The real next page, with the marker added to its query.
    assert foreign == origin + real.removeprefix(f"https://{TWILIO_HOST}") + "&" + FOREIGN_MARKER
    assert [t["sid"] for t in second["tasks"]] == site.tasks[2:4]
    assert [e.followed_foreign for e in proxy.log] == [False, True]
    # Upstream saw the real next page, without the marker.
    assert site.world.emu.request_log[-1].query == parse_qs(urlsplit(real).query)


def test_next_page_foreign_on_the_last_page_points_at_this_page(site: Site):
    path = site.tasks_path() + "?PageSize=2"
    emu = site.world.emu.base_url
    url = site.get(emu, path).json()["meta"]["next_page_url"]
    while (last := site.get(emu, url.removeprefix(f"https://{TWILIO_HOST}")).json())["meta"][
        "next_page_url"
    ]:
        url = last["meta"]["next_page_url"]
    tail = url.removeprefix(f"https://{TWILIO_HOST}")
    got, _ = one(site, tail, Select("list_tasks"), NextPage("foreign"))
    assert got.json()["meta"]["next_page_url"] == f"https://evil.example.com{tail}&{FOREIGN_MARKER}"


def test_next_page_foreign_on_a_v2010_list_adds_the_meta_twilio_reads_first(site: Site):
    path = site.conferences_path() + "?Status=completed&PageSize=2"
    real = site.get(site.world.emu.base_url, path).json()["next_page_uri"]
    got, _ = one(site, path, Select("list_conferences"), NextPage("foreign"))
    doc = got.json()
    assert doc["next_page_uri"] == real
    assert doc["meta"] == {"next_page_url": f"https://evil.example.com{real}&{FOREIGN_MARKER}"}
    assert len(doc["conferences"]) == 2


def test_strip_marker_removes_only_the_marker():
    assert strip_marker(f"/p?a=1&{FOREIGN_MARKER}") == ("/p?a=1", True)
    assert strip_marker(f"/p?{FOREIGN_MARKER}&b=2") == ("/p?b=2", True)
    assert strip_marker(f"/p?{FOREIGN_MARKER}") == ("/p", True)
    assert strip_marker("/p?a=1") == ("/p?a=1", False)


def test_deep_nesting_is_one_array_100000_deep(site: Site):
    got, _ = one(site, site.tasks_path(site.tasks[0]), Select(), DeepNesting())
    assert got.status == 200
    assert got.body == b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(RecursionError):
        json.loads(got.body)


def test_huge_body_is_tens_of_megabytes_of_valid_json(site: Site):
    got, _ = one(site, site.tasks_path(), Select(), HugeBody(megabytes=20))
    assert len(got.body) > 20_000_000
    doc = got.json()
    assert len(doc["tasks"]) == 2
    assert len(doc["zz_padding"]) == 20_000_000


# ---------------------------------------------------------------- body and status mutations


def test_truncate_cuts_the_body_and_content_length_agrees(site: Site):
    path = site.tasks_path(site.tasks[0])
    full = site.get(site.world.emu.base_url, path).body
    got, _ = one(site, path, Select(), Truncate(keep=40))
    assert got.body == full[:40]
    got, _ = one(site, path, Select(), Truncate(keep=10**9))
    assert got.body == full[:-1]


def test_html_page_with_status_200(site: Site):
    got, _ = one(site, site.tasks_path(), Select(), Html())
    assert (got.status, got.body) == (200, HTML_PAGE)
    assert got.headers["Content-Type"].startswith("text/html")


def test_empty_body_keeps_the_status(site: Site):
    got, _ = one(site, site.tasks_path(site.tasks[0]), Select(), EmptyBody())
    assert (got.status, got.body) == (200, b"")


@pytest.mark.parametrize(
    ("mutation", "code"),
    [
        (Status(500), 20500),
        (Status(502), 20500),
        (Status(429), 20429),
        (Status(401), 20003),
        (Status(403), 20403),
        (Status(403, error=70051), 70051),
        (Status(404), 20404),
        (Status(412), 20412),
        (Status(400), 20001),
        (Status(400, error=80906), 80906),
    ],
)
def test_status_swaps_the_code_with_twilio_s_error_body(site: Site, mutation: Status, code: int):
    got, _ = one(site, site.tasks_path(site.tasks[0]), Select(), mutation)
    assert got.status == mutation.code
    assert (got.json()["status"], got.json()["code"]) == (mutation.code, code)
    assert "ETag" not in got.headers


def test_status_can_keep_or_drop_the_body(site: Site):
    path = site.tasks_path(site.tasks[0])
    full = site.get(site.world.emu.base_url, path).body
    got, _ = one(site, path, Select(), Status(500, body="keep"))
    assert (got.status, got.body) == (500, full)
    got, _ = one(site, path, Select(), Status(502, body="empty"))
    assert (got.status, got.body) == (502, b"")


def test_set_header_removes_the_etag(site: Site):
    got, _ = one(site, site.tasks_path(site.tasks[0]), Select(), SetHeader("ETag", None))
    assert "ETag" not in got.headers
    assert got.json()["sid"] == site.tasks[0]


def test_repeat_answers_with_the_previous_answer_of_the_same_kind(site: Site):
    with proxied(site, (Select("fetch_task", when=Every(1)), Repeat())) as proxy:
        first = site.get(proxy.base_url, site.tasks_path(site.tasks[0])).json()
        site.get(proxy.base_url, site.call_path(site.calls[0]))
        second = site.get(proxy.base_url, site.tasks_path(site.tasks[1])).json()
    assert first["sid"] == site.tasks[0]  # nothing to repeat yet
    assert second["sid"] == site.tasks[0]
    assert proxy.log[0].note == "unchanged: no previous answer of this kind"
    assert proxy.log[2].note == ""


def test_repeat_gives_the_same_list_page_twice(site: Site):
    emu = site.world.emu.base_url
    page1 = site.get(emu, site.tasks_path() + "?PageSize=2").json()
    next_url = page1["meta"]["next_page_url"]
    assert next_url.startswith(f"https://{TWILIO_HOST}/")
    next_tail = next_url.removeprefix(f"https://{TWILIO_HOST}")
    with proxied(site, (Select("list_tasks", when=Nth(2)), Repeat())) as proxy:
        site.get(proxy.base_url, site.tasks_path() + "?PageSize=2")
        again = site.get(proxy.base_url, next_tail).json()
    assert again == page1


# ---------------------------------------------------------------- transport mutations


def test_trickle_sends_headers_at_once_and_the_body_slowly(site: Site):
    path = site.call_path(site.calls[0])
    full = site.get(site.world.emu.base_url, path).body
    assert json.loads(full)["sid"] == site.calls[0]
    chunks = -(-len(full) // 200)
    started = time.monotonic()
    got, proxy = one(site, path, Select(), Trickle(chunk=200, interval=0.1))
    took = time.monotonic() - started
    assert got.body == full
    assert got.seconds_to_headers < 0.1 * chunks / 2
    assert took >= 0.1 * (chunks - 1)
    (exchange,) = proxy.log
    assert exchange.delivered
    assert exchange.seconds >= 0.1 * (chunks - 1)


def test_trickle_outlasts_a_client_timeout(site: Site):
    path = site.tasks_path(site.tasks[0])
    with (
        proxied(site, (Select(), Trickle(chunk=4, interval=0.2))) as proxy,
        pytest.raises(asyncio.TimeoutError),
    ):
        site.get(proxy.base_url, path, timeout=1)
    (exchange,) = proxy.log  # written once the proxy noticed the client had gone
    assert not exchange.delivered


def test_drop_unsent_never_reaches_upstream(fresh: Site):
    with (
        proxied(fresh, (Select("update_task"), Drop("unsent"))) as proxy,
        pytest.raises(aiohttp.ServerDisconnectedError),
    ):
        fresh.post(proxy.base_url, fresh.tasks_path(fresh.tasks[0]), CANCEL)
    assert fresh.world.emu.request_log == []
    assert proxy.log[0].status is None


def test_drop_before_answer_after_the_write_was_applied(fresh: Site):
    with (
        proxied(fresh, (Select("update_task"), Drop("before_answer"))) as proxy,
        pytest.raises(aiohttp.ServerDisconnectedError),
    ):
        fresh.post(proxy.base_url, fresh.tasks_path(fresh.tasks[0]), CANCEL)
    assert [m.task_sid for m in fresh.world.emu.mutations] == [fresh.tasks[0]]
    assert (proxy.log[0].upstream_status, proxy.log[0].status) == (200, None)


def test_drop_mid_body_after_the_write_was_applied(fresh: Site):
    with (
        proxied(fresh, (Select("writes"), Drop("mid_body"))) as proxy,
        pytest.raises(aiohttp.ClientPayloadError),
    ):
        fresh.post(proxy.base_url, fresh.tasks_path(fresh.tasks[0]), CANCEL)
    assert [m.task_sid for m in fresh.world.emu.mutations] == [fresh.tasks[0]]


def test_a_garbled_answer_to_a_write_comes_after_the_write_was_applied(fresh: Site):
    with proxied(fresh, (Select("update_task"), Status(500))) as proxy:
        got = fresh.post(proxy.base_url, fresh.tasks_path(fresh.tasks[0]), CANCEL)
    assert got.status == 500
    assert [m.task_sid for m in fresh.world.emu.mutations] == [fresh.tasks[0]]
    (exchange,) = proxy.log
    assert (exchange.upstream_status, exchange.status) == (200, 500)
