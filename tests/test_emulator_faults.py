"""Each fault knob of the emulator, alone. Assertions are on counts and states, not durations."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

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


# ---------------------------------------------------------------- issue 11: answers after a write


def test_html_after_write_answers_200_html_but_writes(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    world.emu.set_faults(Faults(html_after_write_rate=1.0))
    assert (
        world.session.get(world.tasks_url(sid))
        .headers["Content-Type"]
        .startswith("application/json")
    )  # reads are untouched
    resp = cancel(world, sid)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert resp.text.startswith("<!DOCTYPE html>")
    assert world.emu.task(sid).status == "canceled"
    (mutation,) = world.emu.mutations
    assert mutation.task_sid == sid
    assert world.emu.request_log[-1].fault == "html_after_write"


def test_garbled_after_write_answers_200_with_cut_json_but_writes(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    world.emu.set_faults(Faults(garbled_after_write_rate=1.0))
    resp = cancel(world, sid)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.text.startswith('{"account_sid": ')
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    with pytest.raises(requests.JSONDecodeError):
        resp.json()
    assert world.emu.task(sid).status == "canceled"
    assert len(world.emu.mutations) == 1
    assert world.emu.request_log[-1].fault == "garbled_after_write"


def test_after_write_answers_also_apply_to_flex_writes(world: World) -> None:
    acct = world.auth[0]
    for knob in ("html_after_write_rate", "garbled_after_write_rate"):
        refs = world.emu.add_interaction(acct, workspace_sid=world.ws)
        world.emu.set_faults(Faults(**{knob: 1.0}))
        url = f"https://flex-api.twilio.com/v1/Interactions/{refs.interaction_sid}"
        url += f"/Channels/{refs.channel_sid}"
        resp = world.session.post(url, data={"Status": "closed", "Routing": '{"status":"closed"}'})
        assert resp.status_code == 200
        assert world.emu.task(refs.task_sid).status == "completed"
    assert len(world.emu.flex_writes) == 2


# ---------------------------------------------------------------- Twilio's clock


def test_clock_offset_moves_every_timestamp_and_the_date_header() -> None:
    now = datetime(2026, 12, 1, 12, 0, 0, 500_000, tzinfo=timezone.utc)
    with Emulator(Faults(clock_offset=-90.0), clock=lambda: now) as emu:
        twilio_now = now - timedelta(seconds=90)
        assert emu.now() == twilio_now
        acct = emu.add_account()
        assert acct.date_created == twilio_now
        ws = emu.add_workspace(acct.sid)
        sid = emu.add_task(ws.sid, "pending", age=timedelta(minutes=10))
        session = EmulatorSession(emu.base_url, (acct.sid, acct.auth_token))
        url = f"{TASKROUTER}/v1/Workspaces/{ws.sid}/Tasks/{sid}"
        fetched = session.get(url)
        assert fetched.headers["Date"] == "Tue, 01 Dec 2026 11:58:30 GMT"
        assert fetched.json()["date_created"] == "2026-12-01T11:48:30Z"
        assert fetched.json()["age"] == 600
        updated = session.post(url, data={"AssignmentStatus": "canceled", "Reason": "x"})
        assert updated.json()["date_updated"] == "2026-12-01T11:58:30Z"
        assert emu.mutations[0].at == twilio_now
        emu.set_faults(Faults(clock_offset=3600.0))
        for resp in (
            session.get(url),
            session.get(f"https://127.0.0.1/v1/Workspaces/{ws.sid}"),  # refused host
            EmulatorSession(emu.base_url, ("AC1", "x")).get(url),  # 401
            requests.get(f"{emu.base_url}/__emulator/state", timeout=10),
        ):
            assert resp.headers["Date"] == "Tue, 01 Dec 2026 13:00:00 GMT"
        emu.platform_close(emu.add_task(ws.sid, "pending"))
        assert emu.platform_events[-1].at == now + timedelta(hours=1)


def test_date_header_follows_the_real_clock_without_an_offset(world: World) -> None:
    resp = world.session.get(world.tasks_url())
    date = parsedate_to_datetime(resp.headers["Date"])
    assert abs(datetime.now(timezone.utc) - date) < timedelta(seconds=5)
    world.emu.set_faults(Faults(clock_offset=-86400.0))
    date = parsedate_to_datetime(world.session.get(world.tasks_url()).headers["Date"])
    assert timedelta(hours=23) < datetime.now(timezone.utc) - date < timedelta(hours=25)


def test_new_knobs_through_the_admin_endpoint(world: World) -> None:
    admin = f"{world.emu.base_url}/__emulator/faults"
    good = {
        "clock_offset": -30,
        "list_attributes": True,
        "closed_channel_close": "accept",
        "revoke_after": 5,
        "html_after_write_rate": 0.5,
        "garbled_after_write_rate": 0.25,
    }
    resp = requests.post(admin, json=good, timeout=10)
    assert resp.status_code == 200, resp.text
    assert world.emu.faults == Faults(
        clock_offset=-30.0,
        list_attributes=True,
        closed_channel_close="accept",
        revoke_after=5,
        html_after_write_rate=0.5,
        garbled_after_write_rate=0.25,
    )
    assert resp.json()["faults"]["closed_channel_close"] == "accept"
    for bad in (
        {"list_attributes": 1},
        {"list_attributes": "true"},
        {"closed_channel_close": "maybe"},
        {"closed_channel_close": 1},
        {"revoke_after": -1},
        {"revoke_after": 2.5},
        {"revoke_after": True},
        {"clock_offset": "soon"},
        {"html_after_write_rate": 2},
        {"garbled_after_write_rate": None},
    ):
        resp = requests.post(admin, json=bad, timeout=10)
        assert (resp.status_code, resp.json()["code"]) == (400, 20001), bad
    nan = requests.post(admin, data='{"clock_offset": NaN}', timeout=10)
    assert (nan.status_code, nan.json()["code"]) == (400, 20001)
    assert requests.post(admin, json={"revoke_after": None}, timeout=10).status_code == 200
