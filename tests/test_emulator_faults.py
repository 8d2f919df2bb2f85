"""Each fault knob of the emulator, alone. Assertions are on counts and states, not durations."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import pytest
import requests

from emulator_client import API, TASKROUTER, EmulatorSession
from stuck_tasks.emulator import Emulator, Faults


@dataclass
class World:
    emu: Emulator
    session: EmulatorSession
    auth: tuple[str, str]
    ws: str

    def tasks_url(self, sid: str = "") -> str:
        url = f"{TASKROUTER}/v1/Workspaces/{self.ws}/Tasks"
        return f"{url}/{sid}" if sid else url


@pytest.fixture
def world() -> Iterator[World]:
    with Emulator() as emu:
        acct = emu.add_account()
        ws = emu.add_workspace(acct.sid)
        session = EmulatorSession(emu.base_url, (acct.sid, acct.auth_token))
        yield World(emu, session, (acct.sid, acct.auth_token), ws.sid)


def cancel(world: World, sid: str) -> requests.Response:
    return world.session.post(
        world.tasks_url(sid), data={"AssignmentStatus": "canceled", "Reason": "x"}
    )


def test_concurrency_limit_answers_429_to_the_excess(world: World) -> None:
    limit = 4
    world.emu.set_faults(Faults(concurrency_limit=limit, latency=1.5))
    barrier = threading.Barrier(limit + 5)

    def one(_: int) -> int:
        with EmulatorSession(world.emu.base_url, world.auth) as s:
            barrier.wait()
            return s.get(world.tasks_url()).status_code

    with ThreadPoolExecutor(limit + 5) as pool:
        statuses = list(pool.map(one, range(limit + 5)))
    assert statuses.count(429) >= 1
    assert statuses.count(200) <= limit + statuses.count(429)
    assert set(statuses) <= {200, 429}
    stats = world.emu.stats()
    assert stats["max_in_flight"] <= limit
    assert stats["429"] == statuses.count(429)
    rejected = [r for r in world.emu.request_log if r.status == 429]
    assert {(r.code, r.fault) for r in rejected} == {(20429, "concurrency")}


def test_rps_limit_answers_429_with_retry_after(world: World) -> None:
    world.emu.set_faults(Faults(rps_limit=2, retry_after=1.2))
    responses = [world.session.get(world.tasks_url()) for _ in range(20)]
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) >= 10
    assert all(r.headers["Retry-After"] == "2" for r in limited)
    assert limited[0].json() == {
        "code": 20429,
        "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }


def test_no_retry_after_header_unless_configured(world: World) -> None:
    world.emu.set_faults(Faults(rps_limit=1))
    responses = [world.session.get(world.tasks_url()) for _ in range(5)]
    assert any(r.status_code == 429 for r in responses)
    assert all("Retry-After" not in r.headers for r in responses)


def test_error_rate_alternates_500_and_503_before_processing(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    world.emu.set_faults(Faults(error_rate=1.0))
    responses = [cancel(world, sid) for _ in range(4)]
    assert [r.status_code for r in responses] == [500, 503, 500, 503]
    assert [r.json()["code"] for r in responses] == [20500, 20503, 20500, 20503]
    assert world.emu.task(sid).status == "pending"
    assert world.emu.stats()["5xx"] == 4


def test_partial_error_rate_is_deterministic_given_the_seed(world: World) -> None:
    def run() -> list[int]:
        world.emu.set_faults(Faults(error_rate=0.5, seed=7))
        return [world.session.get(world.tasks_url()).status_code for _ in range(30)]

    first = run()
    assert first == run()
    assert 200 in first
    assert {500, 503} & set(first)


def test_drop_before_write_disconnects_and_does_not_write(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    world.emu.set_faults(Faults(drop_before_write_rate=1.0))
    with pytest.raises(requests.ConnectionError):
        cancel(world, sid)
    assert world.emu.task(sid).status == "pending"
    assert world.emu.mutations == []
    assert world.emu.stats()["dropped"] == 1
    assert world.emu.request_log[-1].fault == "drop_before_write"
    # Reads are not dropped.
    assert world.session.get(world.tasks_url(sid)).status_code == 200


def test_drop_after_write_disconnects_but_writes(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    world.emu.set_faults(Faults(drop_after_write_rate=1.0))
    with pytest.raises(requests.ConnectionError):
        cancel(world, sid)
    assert world.emu.task(sid).status == "canceled"
    assert len(world.emu.mutations) == 1


def test_aiohttp_client_sees_a_server_disconnect(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    world.emu.set_faults(Faults(drop_after_write_rate=1.0))

    async def post() -> None:
        token = base64.b64encode(":".join(world.auth).encode()).decode()
        headers = {"Authorization": f"Basic {token}", "Host": "taskrouter.twilio.com"}
        async with aiohttp.ClientSession(headers=headers) as session:
            data = {"AssignmentStatus": "canceled", "Reason": "x"}
            url = f"{world.emu.base_url}/v1/Workspaces/{world.ws}/Tasks/{sid}"
            async with session.post(url, data=data) as resp:
                await resp.read()

    with pytest.raises(aiohttp.ServerDisconnectedError):
        asyncio.run(post())
    assert world.emu.task(sid).status == "canceled"


def test_error_after_write_answers_500_but_writes(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    world.emu.set_faults(Faults(error_after_write_rate=1.0))
    resp = cancel(world, sid)
    assert (resp.status_code, resp.json()["code"]) == (500, 20500)
    assert world.emu.task(sid).status == "canceled"
    assert len(world.emu.mutations) == 1


def test_html_answers_200_non_json_and_does_not_write(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    world.emu.set_faults(Faults(html_rate=1.0))
    resp = cancel(world, sid)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    with pytest.raises(requests.JSONDecodeError):
        resp.json()
    assert world.emu.task(sid).status == "pending"


def test_latency_delays_every_twilio_request(world: World) -> None:
    world.emu.set_faults(Faults(latency=0.2, latency_jitter=0.05))
    world.session.get(world.tasks_url())
    (entry,) = world.emu.request_log
    assert entry.finished - entry.started >= 0.2  # a lower bound only: sleep never ends early


def test_spike_latency_hits_only_the_spike_rate(world: World) -> None:
    world.emu.set_faults(Faults(spike_rate=1.0, spike_latency=0.1))
    world.session.get(world.tasks_url())
    (entry,) = world.emu.request_log
    assert entry.finished - entry.started >= 0.1


def events_of(world: World, kind: str) -> Faults:
    return Faults(platform_event_rate=1.0, platform_event_kinds=(kind,))


def etag(world: World, sid: str) -> str:
    return world.session.get(world.tasks_url(sid)).headers["ETag"]


@pytest.mark.parametrize(
    ("kind", "start", "end"),
    [
        ("wrap", "assigned", "wrapping"),
        ("platform_close", "pending", "canceled"),
        ("platform_close", "assigned", "completed"),
        ("accept", "reserved", "assigned"),
    ],
)
def test_platform_task_events(world: World, kind: str, start: str, end: str) -> None:
    sid = world.emu.add_task(world.ws, start)
    before = etag(world, sid)
    world.emu.set_faults(events_of(world, kind))
    after = etag(world, sid)  # this request triggers the event first
    assert after != before
    view = world.emu.task(sid)
    assert view.status == end
    assert view.history[-1].by == "platform"
    assert [e.kind for e in world.emu.platform_events] == [kind]


def test_platform_close_of_pending_uses_ttl_reason(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    world.emu.platform_close(sid)
    assert world.emu.task(sid).reason == "Task TTL Exceeded"


def test_platform_new_task_and_call_end(world: World) -> None:
    world.emu.set_faults(events_of(world, "new_task"))
    world.session.get(world.tasks_url())
    (event,) = world.emu.platform_events
    assert event.task_sid is not None
    assert event.call_sid is not None
    assert world.emu.task(event.task_sid).status == "pending"
    assert world.emu.call(event.call_sid).status == "in-progress"
    world.emu.set_faults(events_of(world, "call_end"))
    world.session.get(world.tasks_url())
    assert world.emu.call(event.call_sid).status == "completed"
    assert world.emu.call(event.call_sid).end_time is not None
    assert world.emu.platform_events[-1].kind == "call_end"


def test_direct_platform_methods_refuse_impossible_changes(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    with pytest.raises(ValueError, match="wrap"):
        world.emu.platform_wrap(sid)
    call = world.emu.add_call(world.session.auth[0], "completed", ended_ago=timedelta(minutes=1))
    with pytest.raises(ValueError, match="already ended"):
        world.emu.end_call(call)


def test_faults_validate_their_knobs() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        Faults(error_rate=1.5)
    with pytest.raises(ValueError, match="platform event"):
        Faults(platform_event_kinds=("meteor",))
    assert Faults.from_mapping({"latency": 1, "platform_event_kinds": ["wrap"]}) == Faults(
        latency=1.0, platform_event_kinds=("wrap",)
    )


def test_a_broken_call_answers_500_until_repaired(world: World) -> None:
    call = world.emu.add_call(world.auth[0], "completed")
    url = f"{API}/2010-04-01/Accounts/{world.auth[0]}/Calls/{call}.json"
    world.emu.break_call(call)
    resp = world.session.get(url)
    assert (resp.status_code, resp.json()["code"]) == (500, 20500)
    world.emu.repair_call(call)
    assert world.session.get(url).status_code == 200
