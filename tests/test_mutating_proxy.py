"""The mutating proxy itself: transparent with an empty plan, and each mutation does what it says.

A plain aiohttp client talks to the proxy in front of a running emulator.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

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
    route_kind,
    strip_marker,
)
from stuck_tasks.emulator import Faults

TWILIO_HOST = "taskrouter.twilio.com"
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

    def get(self, base: str, path: str, **kwargs: Any) -> Got:
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
    """Read-only tests share one emulator: 5 pending voice tasks, 2 to a page."""
    w = make_world(Faults(max_page_size=2))
    yield _seed(w)
    w.emu.stop()


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
    assert all(Select(when=Always()).fires(n) for n in range(1, 8))
    with pytest.raises(ValueError, match="unknown request kind"):
        Select("fetch_tasks")


def test_each_rule_counts_its_own_matches_and_the_first_that_fires_wins(site: Site):
    rules = ((Select("fetch_task", when=Nth(2)), Status(500)), (Select("fetch_task"), Status(404)))
    with proxied(site, *rules) as proxy:
        statuses = [site.get(proxy.base_url, site.tasks_path(t)).status for t in site.tasks[:3]]
        site.get(proxy.base_url, site.call_path(site.calls[0]))
    assert statuses == [404, 500, 404]
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
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", first_page, {}),
        ("GET", site.tasks_path(site.tasks[0]), {}),
        ("GET", site.call_path(site.calls[0]), {}),
        ("GET", f"/2010-04-01/Accounts/{site.world.account_sid}.json", {}),
        ("GET", f"/v1/Workspaces/{site.world.workspace_sid}", {}),
        ("GET", site.tasks_path("WT" + "0" * 32), {}),
        ("POST", site.tasks_path(site.tasks[0]), {"headers": wrong_etag}),
    ]
    emu = site.world.emu.base_url
    with MutatingProxy(emu) as proxy:
        for method, path, extra in cases:
            data = {"AssignmentStatus": "canceled"} if method == "POST" else None
            direct = request(method, emu + path, site.auth, data=data, **extra)
            through = request(method, proxy.base_url + path, site.auth, data=data, **extra)
            assert (through.status, through.body) == (direct.status, direct.body), path
            assert stable_headers(through) == stable_headers(direct), path
        unauthenticated = request("GET", proxy.base_url + first_page, None)
    assert unauthenticated.status == 401
    assert all(e.mutation is None and e.status == e.upstream_status for e in proxy.log)


def test_host_and_authorization_reach_upstream_unchanged(site: Site):
    with MutatingProxy(site.world.emu.base_url) as proxy:
        page = site.get(proxy.base_url, site.tasks_path() + "?PageSize=2").json()
        loopback = site.get(proxy.base_url, site.tasks_path(), host="127.0.0.1:9").json()
        bad = request("GET", proxy.base_url + site.tasks_path(), "Basic eDp5")
    # The emulator renders URLs from the Host it was sent.
    assert page["meta"]["url"].startswith(f"http://{TWILIO_HOST}/v1/Workspaces/")
    assert loopback["meta"]["url"].startswith("http://127.0.0.1:9/")
    assert bad.status == 401
    assert [e.host for e in proxy.log] == [TWILIO_HOST, "127.0.0.1:9", TWILIO_HOST]


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


def test_null_everywhere_keeps_the_shape(site: Site):
    got, _ = one(site, site.tasks_path(), Select(), NullEverywhere())
    doc = got.json()
    assert len(doc["tasks"]) == 2
    assert doc["tasks"][0]["sid"] is None
    assert doc["meta"]["next_page_url"] is None
    assert all(v is None for v in doc["meta"].values())


def test_next_page_same_loops_on_the_page_as_the_client_addressed_it(site: Site):
    path = site.tasks_path() + "?PageSize=2"
    got, _ = one(site, path, Select("list_tasks"), NextPage("same"))
    assert got.json()["meta"]["next_page_url"] == f"http://{TWILIO_HOST}{path}"


def test_next_page_foreign_points_abroad_and_a_client_that_follows_is_seen(site: Site):
    path = site.tasks_path() + "?PageSize=2"
    with proxied(site, (Select("list_tasks", when=Nth(1)), NextPage("foreign"))) as proxy:
        first = site.get(proxy.base_url, path).json()
        foreign = first["meta"]["next_page_url"]
        # A client that ignores the host (as a base-URL rewrite does) lands back on the proxy.
        tail = foreign.removeprefix("https://evil.example.com")
        second = site.get(proxy.base_url, tail).json()
    assert foreign.startswith("https://evil.example.com/v1/Workspaces/")
    assert foreign.endswith(FOREIGN_MARKER)
    assert [t["sid"] for t in second["tasks"]] == site.tasks[2:4]
    assert [e.followed_foreign for e in proxy.log] == [False, True]
    # Upstream saw the real next page, without the marker.
    assert FOREIGN_MARKER not in site.world.emu.request_log[-1].query


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


@pytest.mark.parametrize("code", [500, 502, 429, 401, 403, 404])
def test_status_swaps_the_code_with_twilio_s_error_body(site: Site, code: int):
    got, _ = one(site, site.tasks_path(site.tasks[0]), Select(), Status(code))
    assert got.status == code
    assert got.json()["status"] == code
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
    next_tail = page1["meta"]["next_page_url"].removeprefix(f"http://{TWILIO_HOST}")
    with proxied(site, (Select("list_tasks", when=Nth(2)), Repeat())) as proxy:
        site.get(proxy.base_url, site.tasks_path() + "?PageSize=2")
        again = site.get(proxy.base_url, next_tail).json()
    assert again == page1


# ---------------------------------------------------------------- transport mutations


def test_trickle_sends_headers_at_once_and_the_body_slowly(site: Site):
    path = site.call_path(site.calls[0])
    full = site.get(site.world.emu.base_url, path).body
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
