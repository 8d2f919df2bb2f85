"""TaskRouter's per-workspace, per-endpoint limits and the account-wide concurrency header.

The window math runs on a fake clock; the HTTP tests use windows far longer than they run, except
the one real-time test at the end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from stuck_tasks.emulator import Emulator, Faults
from stuck_tasks.emulator.limits import Limit, SlidingWindows, limit_for

TASKROUTER = "taskrouter.twilio.com"
HEADERS = ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Config")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def a_limit(
    rate: float = 1.0,
    window: float = 10.0,
    *,
    key: str = "Task-Update",
    namespace: str = "WS1",
    account: str = "AC1",
) -> Limit:
    return Limit(account, namespace, key, rate, window)


# ---------------------------------------------------------------- window math (fake clock)


def test_the_budget_is_rate_times_window_and_remaining_counts_down() -> None:
    windows = SlidingWindows(FakeClock())
    limit = a_limit(rate=2.5, window=4)
    assert limit.budget == 10
    assert [windows.admit(limit) for _ in range(11)] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, None]
    assert windows.remaining(limit) == 0


def test_a_refused_request_is_counted_too() -> None:
    # Whether Twilio counts refused requests in its average is unpublished: the stricter
    # reading, counted, so asking again at the rate keeps the window full.
    clock = FakeClock()
    windows = SlidingWindows(clock)
    limit = a_limit(rate=1, window=10)
    for _ in range(10):
        windows.admit(limit)
    clock.now += 5
    assert all(windows.admit(limit) is None for _ in range(100))
    clock.now += 5  # the first ten age out, but the hundred refused ones are still in
    assert windows.admit(limit) is None
    assert windows.remaining(limit) == 0
    clock.now += 5  # the hundred aged out; the one refused at 1010 is still in the window
    assert [windows.admit(limit) for _ in range(10)] == [*range(8, -1, -1), None]


def test_requests_age_out_one_by_one_a_window_after_admission() -> None:
    clock = FakeClock()
    windows = SlidingWindows(clock)
    limit = a_limit(rate=0.3, window=10)  # budget 3, although 0.3 × 10 is 3.0000000000000004
    for _ in range(3):
        assert windows.admit(limit) is not None
        clock.now += 1
    assert clock.now == 1003
    assert windows.remaining(limit) == 0
    clock.now = 1009.999
    assert windows.remaining(limit) == 0
    clock.now = 1010.0  # admitted at 1000: the window is the half-open (now - 10, now]
    assert windows.remaining(limit) == 1
    assert windows.admit(limit) == 0
    clock.now = 1011.0
    assert windows.remaining(limit) == 1


def test_workspaces_keys_and_accounts_have_separate_budgets() -> None:
    windows = SlidingWindows(FakeClock())
    limit = a_limit(rate=0.1, window=10)
    assert windows.admit(limit) == 0
    assert windows.admit(limit) is None
    for other in (
        a_limit(rate=0.1, window=10, namespace="WS2"),
        a_limit(rate=0.1, window=10, key="Task-Fetch"),
        a_limit(rate=0.1, window=10, account="AC2"),
    ):
        assert windows.admit(other) == 0


def test_2000_updates_at_25_per_second_over_10_seconds_take_70_seconds() -> None:
    # A client that asks only when the window has room gets a window's budget every 10 s: the
    # last of 2,000 at (2000 − 250) ÷ 25 = 70 s, the benchmark's floor for its rate-limited row.
    clock = FakeClock()
    windows = SlidingWindows(clock)
    limit = a_limit(rate=25, window=10)
    start = clock.now
    admitted: list[float] = []
    while len(admitted) < 2000:
        if windows.remaining(limit) >= 1:
            assert windows.admit(limit) is not None
            admitted.append(clock.now - start)
        else:
            clock.now += 1 / 64  # (exact in binary)
    assert admitted[-1] == 70.0
    for i in range(len(admitted) - 250):
        assert admitted[i + 250] - admitted[i] >= 10 - 1e-6


def test_a_client_that_retries_while_refused_keeps_the_window_full() -> None:
    # Its refusals are counted: retrying every 1/64 s once the budget is spent, it is never
    # admitted again (nor is anyone else sharing the budget), however long it tries.
    clock = FakeClock()
    windows = SlidingWindows(clock)
    limit = a_limit(rate=25, window=10)
    assert all(windows.admit(limit) is not None for _ in range(250))
    tries = []
    for _ in range(64 * 30):
        clock.now += 1 / 64
        tries.append(windows.admit(limit))
    assert set(tries) == {None}


def test_limit_for_maps_the_five_routes_and_counts_workspace_list_per_account() -> None:
    limits = (("Workspace-List", 1.0), ("Task-Update", 25.0))
    listing = limit_for("list_workspaces", "AC1", None, limits, 10)
    assert listing == Limit("AC1", "account", "Workspace-List", 1.0, 10)
    assert limit_for("update_task", "AC1", "WS1", limits, 10) == Limit(
        "AC1", "WS1", "Task-Update", 25.0, 10
    )
    assert limit_for("fetch_task", "AC1", "WS1", limits, 10) is None
    assert limit_for("fetch_call", "AC1", None, limits, 10) is None


def test_header_values_are_plain_numbers_and_a_key_with_its_window() -> None:
    assert a_limit(rate=25, window=10).headers(249) == {
        "X-Rate-Limit-Limit": "25",
        "X-Rate-Limit-Remaining": "249",
        "X-Rate-Limit-Config": "Task-Update;window=10",
    }
    assert a_limit(rate=0.5, window=2.5, key="Task-List").headers(0) == {
        "X-Rate-Limit-Limit": "0.5",
        "X-Rate-Limit-Remaining": "0",
        "X-Rate-Limit-Config": "Task-List;window=2.5",
    }


# ---------------------------------------------------------------- knobs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"taskrouter_limits": (("Task-Create", 1.0),)}, "unknown TaskRouter resource key"),
        ({"taskrouter_limits": (("Task-Update", 0.0),)}, "must be positive"),
        ({"taskrouter_limits": (("Task-Update", float("inf")),)}, "must be positive"),
        ({"taskrouter_limits": (("Task-Update", True),)}, "must be a number"),
        ({"taskrouter_limits": (("Task-Update", 1.0), ("Task-Update", 2.0))}, "limited twice"),
        ({"taskrouter_limits": (("Task-Update", 0.05),)}, "admits no request"),
        ({"taskrouter_limits": ("Task-Update",)}, "pairs"),
        ({"taskrouter_window": 0.0}, "taskrouter_window"),
        ({"taskrouter_window": float("nan")}, "taskrouter_window"),
    ],
)
def test_faults_validate_the_taskrouter_knobs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faults(**kwargs)  # type: ignore[arg-type]


def test_faults_from_and_to_json_use_an_object_for_limits() -> None:
    faults = Faults.from_mapping(
        {"taskrouter_limits": {"Task-Update": 25, "Task-Fetch": 2.5}, "taskrouter_window": 5}
    )
    assert faults == Faults(
        taskrouter_limits=(("Task-Update", 25.0), ("Task-Fetch", 2.5)), taskrouter_window=5.0
    )
    as_json = faults.to_dict()
    assert as_json["taskrouter_limits"] == {"Task-Update": 25.0, "Task-Fetch": 2.5}
    assert Faults.from_mapping(as_json) == faults
    assert Faults().to_dict()["taskrouter_limits"] == {}
    with pytest.raises(ValueError, match="must be an object"):
        Faults.from_mapping({"taskrouter_limits": [["Task-Update", 25]]})
    with pytest.raises(ValueError, match="must be a number"):
        Faults.from_mapping({"taskrouter_limits": {"Task-Update": "25"}})


# ---------------------------------------------------------------- over HTTP


@dataclass
class World:
    emu: Emulator
    session: requests.Session
    auth: tuple[str, str]
    ws: str

    def tasks_url(self, sid: str = "", ws: str | None = None) -> str:
        url = f"{self.emu.base_url}/v1/Workspaces/{ws or self.ws}/Tasks"
        return f"{url}/{sid}" if sid else url

    def limit(self, *pairs: tuple[str, float], window: float = 60.0, **faults: object) -> None:
        self.emu.set_faults(Faults(taskrouter_limits=pairs, taskrouter_window=window, **faults))  # type: ignore[arg-type]


@pytest.fixture
def world() -> Iterator[World]:
    with Emulator() as emu:
        acct = emu.add_account()
        ws = emu.add_workspace(acct.sid)
        session = requests.Session()
        session.auth = (acct.sid, acct.auth_token)
        session.headers["Host"] = TASKROUTER  # connect to the emulator, mean TaskRouter
        yield World(emu, session, (acct.sid, acct.auth_token), ws.sid)
        session.close()


def rate_headers(resp: requests.Response) -> dict[str, str]:
    return {name: resp.headers[name] for name in HEADERS if name in resp.headers}


def cancel(world: World, sid: str) -> requests.Response:
    return world.session.post(
        world.tasks_url(sid), data={"AssignmentStatus": "canceled", "Reason": "x"}
    )


def test_a_limited_key_sends_the_three_headers_on_200s_404s_and_429s(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    world.limit(("Task-Fetch", 0.05))  # 3 requests per 60 s
    missing = "WT" + "0" * 32
    answers = [world.session.get(world.tasks_url(s)) for s in (sid, missing, sid, sid, missing)]
    assert [r.status_code for r in answers] == [200, 404, 200, 429, 429]
    assert [rate_headers(r) for r in answers] == [
        {
            "X-Rate-Limit-Limit": "0.05",
            "X-Rate-Limit-Remaining": str(left),
            "X-Rate-Limit-Config": "Task-Fetch;window=60",
        }
        for left in (2, 1, 0, 0, 0)
    ]
    assert answers[3].json() == {
        "code": 20429,
        "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }
    assert "Retry-After" not in answers[3].headers
    # Other keys stay unlimited and carry none of the headers.
    assert rate_headers(world.session.get(world.tasks_url())) == {}


def test_no_rate_limit_headers_without_limits(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    answers = [
        world.session.get(world.tasks_url()),
        world.session.get(world.tasks_url(sid)),
        cancel(world, sid),
        world.session.get(f"{world.emu.base_url}/v1/Workspaces"),
        world.session.get(f"{world.emu.base_url}/v1/Workspaces/{world.ws}"),
    ]
    assert [r.status_code for r in answers] == [200] * 5
    assert [rate_headers(r) for r in answers] == [{}] * 5


def test_an_update_answered_429_is_not_processed(world: World) -> None:
    first, second = (world.emu.add_task(world.ws, "pending") for _ in range(2))
    world.limit(("Task-Update", 1 / 60), retry_after=2.5)
    assert cancel(world, first).status_code == 200
    refused = cancel(world, second)
    assert (refused.status_code, refused.json()["code"]) == (429, 20429)
    assert refused.headers["Retry-After"] == "3"
    assert world.emu.task(second).status == "pending"
    assert [m.task_sid for m in world.emu.mutations] == [first]
    assert world.emu.request_log[-1].fault == "taskrouter"
    assert world.emu.stats()["429"] == 1


def test_each_workspace_and_each_account_has_its_own_budget(world: World) -> None:
    other_ws = world.emu.add_workspace(world.auth[0], "Sales").sid
    other = world.emu.add_account("Other")
    world.limit(("Task-List", 1 / 60), ("Workspace-List", 1 / 60))
    workspaces = f"{world.emu.base_url}/v1/Workspaces"
    assert world.session.get(world.tasks_url()).status_code == 200
    assert world.session.get(world.tasks_url()).status_code == 429
    assert world.session.get(world.tasks_url(ws=other_ws)).status_code == 200
    assert world.session.get(workspaces).status_code == 200
    assert world.session.get(workspaces).status_code == 429
    resp = requests.get(
        workspaces, auth=(other.sid, other.auth_token), headers={"Host": TASKROUTER}, timeout=10
    )
    assert resp.status_code == 200
    assert resp.headers["X-Rate-Limit-Config"] == "Workspace-List;window=60"


def test_the_admin_endpoint_sets_and_validates_taskrouter_limits(world: World) -> None:
    admin = f"{world.emu.base_url}/__emulator/faults"
    body = {"taskrouter_limits": {"Task-Update": 25, "Task-Fetch": 2.5}, "taskrouter_window": 5}
    resp = requests.post(admin, json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["faults"]["taskrouter_limits"] == {"Task-Update": 25.0, "Task-Fetch": 2.5}
    assert resp.json()["faults"]["taskrouter_window"] == 5.0
    state = requests.get(f"{world.emu.base_url}/__emulator/state", timeout=10).json()
    assert state["faults"]["taskrouter_limits"] == {"Task-Update": 25.0, "Task-Fetch": 2.5}
    expected = Faults(
        taskrouter_limits=(("Task-Update", 25.0), ("Task-Fetch", 2.5)), taskrouter_window=5.0
    )
    assert world.emu.faults == expected
    for bad, message in [
        (
            {"taskrouter_limits": {"Task-Create": 1}},
            "unknown TaskRouter resource key 'Task-Create'",
        ),
        ({"taskrouter_limits": [["Task-Update", 25]]}, "taskrouter_limits must be an object"),
        ({"taskrouter_limits": {"Task-Update": -1}}, "Task-Update: the rate must be positive"),
        ({"taskrouter_limits": {"Task-Update": 0.05}}, "admits no request"),
        ({"taskrouter_window": 0}, "taskrouter_window must be a positive number"),
    ]:
        refused = requests.post(admin, json=bad, timeout=10)
        assert (refused.status_code, refused.json()["code"]) == (400, 20001)
        assert message in refused.json()["message"]
    assert world.emu.faults == expected


# ---------------------------------------------------------------- Twilio-Concurrent-Requests


def concurrent_gets(world: World, n: int, url: str) -> list[requests.Response]:
    barrier = threading.Barrier(n)

    def one(_: int) -> requests.Response:
        with requests.Session() as s:
            s.headers["Host"] = TASKROUTER
            s.auth = world.auth
            barrier.wait()
            return s.get(url, timeout=30)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_twilio_concurrent_requests_counts_this_request_and_those_in_flight(world: World) -> None:
    assert world.session.get(world.tasks_url()).headers["Twilio-Concurrent-Requests"] == "1"
    unauthenticated = requests.get(world.tasks_url(), headers={"Host": TASKROUTER}, timeout=10)
    assert unauthenticated.headers["Twilio-Concurrent-Requests"] == "0"
    world.emu.set_faults(Faults(latency=1.0))  # all eight are in flight together
    answers = concurrent_gets(world, 8, world.tasks_url())
    assert [r.status_code for r in answers] == [200] * 8
    counts = sorted(int(r.headers["Twilio-Concurrent-Requests"]) for r in answers)
    assert counts == list(range(1, 9))
    assert world.emu.stats()["max_in_flight"] == 8


def test_concurrency_429s_report_one_past_the_limit_and_keep_rate_headers(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    world.limit(("Task-Fetch", 1.0), concurrency_limit=4, latency=1.0)  # budget 60
    answers = concurrent_gets(world, 9, world.tasks_url(sid))
    admitted = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    assert (len(admitted), len(refused)) == (4, 5)
    assert sorted(int(r.headers["Twilio-Concurrent-Requests"]) for r in admitted) == [1, 2, 3, 4]
    assert {r.headers["Twilio-Concurrent-Requests"] for r in refused} == {"5"}
    # A concurrency 429 spends no TaskRouter budget, and says what is left.
    assert sorted(int(r.headers["X-Rate-Limit-Remaining"]) for r in admitted) == [56, 57, 58, 59]
    assert {r.headers["X-Rate-Limit-Remaining"] for r in refused} == {"56"}
    assert {r.fault for r in world.emu.request_log if r.status == 429} == {"concurrency"}


# ---------------------------------------------------------------- real time


def test_a_burst_beyond_the_budget_gets_429s_and_a_client_paced_at_the_rate_none(
    world: World,
) -> None:
    rate, window = 20.0, 0.5  # a budget of 10 per half second
    world.limit(("Task-List", rate), window=window)
    started = time.monotonic()
    burst = []
    for _ in range(25):
        resp = world.session.get(world.tasks_url())
        burst.append((resp, time.monotonic() - started))
    assert [r.status_code for r, _ in burst[:10]] == [200] * 10
    # Every request answered within half a second of the first one's start is over the budget.
    assert all(r.status_code == 429 for r, at in burst[10:] if at < window)
    assert any(r.status_code == 429 for r, _ in burst)
    time.sleep(window)
    # Paced: the next request leaves 1/rate after the previous answer, so any two admissions are
    # more than 1/rate apart and no half second ever holds more than 10 of them.
    paced = []
    for _ in range(30):
        paced.append(world.session.get(world.tasks_url()))
        time.sleep(1 / rate)
    assert [r.status_code for r in paced] == [200] * 30
