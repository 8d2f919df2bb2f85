"""Emulator behaviour through the real twilio library: paging, ETag, transitions, auth."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from twilio.base import values
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from emulator_client import API, TASKROUTER, EmulatorSession, emulator_client
from stuck_tasks.emulator import Emulator, Faults


@dataclass
class World:
    emu: Emulator
    client: Client
    session: EmulatorSession
    account_sid: str
    ws: str

    def tasks_url(self, sid: str = "") -> str:
        url = f"{TASKROUTER}/v1/Workspaces/{self.ws}/Tasks"
        return f"{url}/{sid}" if sid else url

    def task_api(self, sid: str) -> Any:
        return self.client.taskrouter.v1.workspaces(self.ws).tasks(sid)


@pytest.fixture
def world() -> Iterator[World]:
    with Emulator() as emu:
        acct = emu.add_account("Acme Support")
        ws = emu.add_workspace(acct.sid, "Support")
        client = emulator_client(emu.base_url, acct.sid, acct.auth_token, acct.sid)
        session = EmulatorSession(emu.base_url, (acct.sid, acct.auth_token))
        yield World(emu, client, session, acct.sid, ws.sid)


def add_many(world: World, n: int, status: str = "pending") -> list[str]:
    return [
        world.emu.add_task(world.ws, status, age=timedelta(hours=5) - timedelta(seconds=i))
        for i in range(n)
    ]


# ---------------------------------------------------------------- paging


def test_2500_tasks_come_in_three_pages_with_absolute_next_urls(world: World) -> None:
    sids = add_many(world, 2500)
    url: str | None = world.tasks_url() + "?PageSize=1000"
    pages = []
    while url:
        body = world.session.get(url).json()
        pages.append([t["sid"] for t in body["tasks"]])
        url = body["meta"]["next_page_url"]
        assert url is None or url.startswith(f"{TASKROUTER}/v1/Workspaces/{world.ws}/Tasks?")
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert [sid for page in pages for sid in page] == sids


def test_twilio_stream_sees_every_task_once(world: World) -> None:
    sids = add_many(world, 2500)
    tasks = world.client.taskrouter.v1.workspaces(world.ws).tasks
    streamed = [t.sid for t in tasks.stream(page_size=1000)]
    assert streamed == sids


def test_closing_tasks_between_pages_neither_skips_nor_repeats(world: World) -> None:
    sids = add_many(world, 2500)
    unserved_closed: set[str] = set()
    served: list[str] = []
    url: str | None = world.tasks_url() + "?AssignmentStatus=pending&PageSize=1000"
    page_no = 0
    while url:
        body = world.session.get(url).json()
        page = [t["sid"] for t in body["tasks"]]
        served += page
        # Cancel everything just served, plus a few tasks not served yet.
        for sid in page:
            resp = world.session.post(
                world.tasks_url(sid), data={"AssignmentStatus": "canceled", "Reason": "test"}
            )
            assert resp.status_code == 200
        for sid in sids[1500 + page_no * 7 : 1500 + page_no * 7 + 3]:
            if sid not in served and sid not in unserved_closed:
                world.emu.platform_close(sid)
                unserved_closed.add(sid)
        url = body["meta"]["next_page_url"]
        page_no += 1
    assert len(served) == len(set(served))
    assert set(served) == set(sids) - unserved_closed


def test_descending_order_and_previous_page(world: World) -> None:
    sids = add_many(world, 30)
    body = world.session.get(
        world.tasks_url(), params={"Ordering": "DateCreated:desc", "PageSize": 10}
    ).json()
    assert [t["sid"] for t in body["tasks"]] == sids[::-1][:10]
    second = world.session.get(body["meta"]["next_page_url"]).json()
    assert [t["sid"] for t in second["tasks"]] == sids[::-1][10:20]
    back = world.session.get(second["meta"]["previous_page_url"]).json()
    assert [t["sid"] for t in back["tasks"]] == sids[::-1][:10]


def test_page_size_above_1000_is_error_20007(world: World) -> None:
    resp = world.session.get(world.tasks_url(), params={"PageSize": 1001})
    assert resp.status_code == 400
    assert resp.json()["code"] == 20007
    assert resp.json()["message"] == "Page size too large"


@pytest.mark.parametrize(
    "params",
    [
        {"PageSize": 0},
        {"AssignmentStatus": "stuck"},
        {"Ordering": "Priority:desc"},
        {"Page": 2},
        {"PageToken": "garbage"},
        {"EvaluateTaskAttributes": "1==1"},
    ],
)
def test_bad_list_parameters_are_400(world: World, params: dict[str, Any]) -> None:
    resp = world.session.get(world.tasks_url(), params=params)
    assert resp.status_code == 400
    assert resp.json()["code"] == 20001


def test_assignment_status_filter_accepts_repeated_and_comma_forms(world: World) -> None:
    pending = world.emu.add_task(world.ws, "pending", age=timedelta(minutes=3))
    reserved = world.emu.add_task(world.ws, "reserved", age=timedelta(minutes=2))
    world.emu.add_task(world.ws, "assigned", age=timedelta(minutes=1))
    for params in (
        [("AssignmentStatus", "pending"), ("AssignmentStatus", "reserved")],
        [("AssignmentStatus", "pending,reserved")],
    ):
        body = world.session.get(world.tasks_url(), params=params).json()
        assert [t["sid"] for t in body["tasks"]] == [pending, reserved]
    listed = world.client.taskrouter.v1.workspaces(world.ws).tasks.list(
        assignment_status=["pending", "reserved"], page_size=50
    )
    assert [t.sid for t in listed] == [pending, reserved]


def test_queue_and_workflow_filters(world: World) -> None:
    sales = world.emu.add_task(world.ws, queue="Sales", workflow="A", age=timedelta(minutes=2))
    world.emu.add_task(world.ws, queue="Billing", workflow="B", age=timedelta(minutes=1))
    body = world.session.get(world.tasks_url(), params={"TaskQueueName": "Sales"}).json()
    assert [t["sid"] for t in body["tasks"]] == [sales]
    queue_sid = body["tasks"][0]["task_queue_sid"]
    workflow_sid = body["tasks"][0]["workflow_sid"]
    for params in (
        {"TaskQueueSid": queue_sid},
        {"WorkflowSid": workflow_sid},
        {"WorkflowName": "A"},
    ):
        assert [
            t["sid"] for t in world.session.get(world.tasks_url(), params=params).json()["tasks"]
        ] == [sales]


def test_max_page_size_serves_short_pages(world: World) -> None:
    sids = add_many(world, 250)
    world.emu.set_faults(Faults(max_page_size=100))
    body = world.session.get(world.tasks_url(), params={"PageSize": 1000}).json()
    assert len(body["tasks"]) == 100
    assert body["meta"]["page_size"] == 100
    streamed = world.client.taskrouter.v1.workspaces(world.ws).tasks.list(page_size=1000)
    assert [t.sid for t in streamed] == sids


def test_list_attributes_puts_each_tasks_attributes_on_list_pages(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending", attributes={"call_sid": "CA" + "1" * 32})
    assert [t["attributes"] for t in world.session.get(world.tasks_url()).json()["tasks"]] == [None]
    world.emu.set_faults(Faults(list_attributes=True))
    (listed,) = world.session.get(world.tasks_url()).json()["tasks"]
    assert listed["attributes"] == world.emu.task(sid).attributes
    (streamed,) = world.client.taskrouter.v1.workspaces(world.ws).tasks.list(page_size=50)
    assert json.loads(streamed.attributes) == {"call_sid": "CA" + "1" * 32}


def test_workspaces_list_and_fetch_are_per_account(world: World) -> None:
    other = world.emu.add_account("Other")
    world.emu.add_workspace(other.sid, "Theirs")
    names = [w.friendly_name for w in world.client.taskrouter.v1.workspaces.list()]
    assert names == ["Support"]
    body = world.session.get(f"{TASKROUTER}/v1/Workspaces", params={"FriendlyName": "Nope"}).json()
    assert body["workspaces"] == []
    assert body["meta"]["key"] == "workspaces"
    assert world.client.taskrouter.v1.workspaces(world.ws).fetch().friendly_name == "Support"


# ---------------------------------------------------------------- ETag and transitions


def test_fetch_gives_an_etag_and_update_with_it_gives_a_new_one(world: World) -> None:
    call = world.emu.add_call(world.account_sid, "completed", ended_ago=timedelta(minutes=15))
    sid = world.emu.add_task(world.ws, "pending", attributes={"call_sid": call})
    fetched = world.task_api(sid).fetch_with_http_info()
    etag = fetched.headers["ETag"]
    assert etag == "0"
    updated = world.task_api(sid).update_with_http_info(
        assignment_status="canceled", reason="call ended", if_match=etag
    )
    assert updated.status_code == 200
    assert updated.headers["ETag"] == "1"
    assert updated.data.assignment_status == "canceled"
    assert updated.data.reason == "call ended"
    view = world.emu.task(sid)
    assert (view.status, view.revision, view.reason) == ("canceled", 1, "call ended")
    assert view.history[-1].by == "api"
    (mutation,) = world.emu.mutations
    assert mutation.task_sid == sid
    assert (mutation.before_status, mutation.after_status) == ("pending", "canceled")
    assert mutation.before_revision == 0
    assert mutation.call_status_at_write == "completed"
    assert mutation.call_end_at_write == world.emu.call(call).end_time
    log = world.emu.request_log[-1]
    assert (log.method, log.if_match, log.status) == ("POST", "0", 200)
    assert log.form == {"AssignmentStatus": "canceled", "Reason": "call ended"}


def test_stale_if_match_is_412(world: World) -> None:
    sid = world.emu.add_task(world.ws, "assigned")
    etag = world.task_api(sid).fetch_with_http_info().headers["ETag"]
    world.emu.platform_wrap(sid)
    with pytest.raises(TwilioRestException) as err:
        world.task_api(sid).update(assignment_status="completed", reason="x", if_match=etag)
    assert (err.value.status, err.value.code) == (412, 20412)
    assert world.emu.task(sid).status == "wrapping"
    assert world.emu.mutations == []


@pytest.mark.parametrize(
    ("start", "target", "message"),
    [
        ("assigned", "canceled", "because it is not pending or reserved."),
        ("wrapping", "canceled", "because it is not pending or reserved."),
        ("canceled", "canceled", "because it is not pending or reserved."),
        ("pending", "completed", "because it is not assigned or wrapping."),
        ("completed", "completed", "because it is not assigned or wrapping."),
        ("pending", "wrapping", "because it's not currently assigned"),
    ],
)
def test_invalid_transitions_are_400_20001(
    world: World, start: str, target: str, message: str
) -> None:
    sid = world.emu.add_task(world.ws, start)
    reason = "cleanup" if target in ("canceled", "completed") else values.unset
    with pytest.raises(TwilioRestException) as err:
        world.task_api(sid).update(assignment_status=target, reason=reason)
    assert (err.value.status, err.value.code) == (400, 20001)
    assert err.value.msg.endswith(message)
    assert f"task {sid} in workspace {world.ws} for account {world.account_sid}" in err.value.msg
    assert world.emu.task(sid).status == start
    assert world.emu.task(sid).revision == 0


@pytest.mark.parametrize(
    ("start", "target"),
    [
        ("pending", "reserved"),
        ("reserved", "pending"),
        ("reserved", "assigned"),
        ("pending", "canceled"),
        ("reserved", "canceled"),
        ("assigned", "wrapping"),
        ("assigned", "completed"),
        ("wrapping", "completed"),
    ],
)
def test_allowed_transitions(world: World, start: str, target: str) -> None:
    sid = world.emu.add_task(world.ws, start)
    data = {"AssignmentStatus": target}
    if target in ("canceled", "completed"):
        data["Reason"] = "done"
    resp = world.session.post(world.tasks_url(sid), data=data)
    assert resp.status_code == 200, resp.text
    assert resp.json()["assignment_status"] == target


def test_closing_without_reason_is_rejected(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending")
    resp = world.session.post(world.tasks_url(sid), data={"AssignmentStatus": "canceled"})
    assert (resp.status_code, resp.json()["code"]) == (400, 20001)
    assert world.emu.task(sid).status == "pending"


def test_closed_tasks_stay_fetchable_for_the_ttl_then_404() -> None:
    now = [datetime(2026, 11, 28, 20, 0, tzinfo=timezone.utc)]
    with Emulator(clock=lambda: now[0]) as emu:
        acct = emu.add_account()
        ws = emu.add_workspace(acct.sid)
        sid = emu.add_task(ws.sid, "pending")
        session = EmulatorSession(emu.base_url, (acct.sid, acct.auth_token))
        url = f"{TASKROUTER}/v1/Workspaces/{ws.sid}/Tasks/{sid}"
        assert session.post(url, data={"AssignmentStatus": "canceled", "Reason": "r"}).ok
        now[0] += timedelta(seconds=299)
        assert session.get(url).status_code == 200
        assert len(session.get(f"{TASKROUTER}/v1/Workspaces/{ws.sid}/Tasks").json()["tasks"]) == 1
        now[0] += timedelta(seconds=2)
        assert session.get(url).json()["code"] == 20404
        assert session.get(f"{TASKROUTER}/v1/Workspaces/{ws.sid}/Tasks").json()["tasks"] == []


def test_unknown_task_is_404(world: World) -> None:
    with pytest.raises(TwilioRestException) as err:
        world.task_api("WT" + "0" * 32).fetch()
    assert (err.value.status, err.value.code) == (404, 20404)


# ---------------------------------------------------------------- auth and accounts


def test_bad_credentials_are_401_20003(world: World) -> None:
    for auth in ((world.account_sid, "wrong"), ("SK" + "0" * 32, "x"), None):
        resp = EmulatorSession(world.emu.base_url, auth).get(world.tasks_url())
        assert resp.status_code == 401
        assert resp.json()["code"] == 20003
        assert resp.json()["message"] == "Authenticate"
    bad = emulator_client(world.emu.base_url, world.account_sid, "wrong", world.account_sid)
    with pytest.raises(TwilioRestException) as err:
        bad.taskrouter.v1.workspaces(world.ws).fetch()
    assert (err.value.status, err.value.code) == (401, 20003)
    assert all(log.account_sid is None for log in world.emu.request_log)


def test_api_key_authenticates_as_its_account(world: World) -> None:
    key = world.emu.add_api_key(world.account_sid, "cleanup")
    client = emulator_client(world.emu.base_url, key.sid, key.secret, world.account_sid)
    assert client.taskrouter.v1.workspaces(world.ws).fetch().sid == world.ws
    assert world.emu.request_log[-1].account_sid == world.account_sid
    assert key.secret not in repr(key)


def test_another_accounts_taskrouter_resources_and_call_are_404(world: World) -> None:
    other = world.emu.add_account("Other")
    their_ws = world.emu.add_workspace(other.sid)
    their_task = world.emu.add_task(their_ws.sid)
    their_call = world.emu.add_call(other.sid)
    for url in (
        f"{TASKROUTER}/v1/Workspaces/{their_ws.sid}",
        f"{TASKROUTER}/v1/Workspaces/{their_ws.sid}/Tasks",
        f"{TASKROUTER}/v1/Workspaces/{their_ws.sid}/Tasks/{their_task}",
        f"{API}/2010-04-01/Accounts/{world.account_sid}/Calls/{their_call}.json",
    ):
        assert world.session.get(url).json()["code"] == 20404, url
    assert (
        world.session.post(
            f"{TASKROUTER}/v1/Workspaces/{their_ws.sid}/Tasks/{their_task}",
            data={"AssignmentStatus": "canceled", "Reason": "x"},
        ).status_code
        == 404
    )
    assert world.emu.task(their_task).status == "pending"


def test_fetch_call_and_account_through_twilio(world: World) -> None:
    call = world.emu.add_call(world.account_sid, "completed", ended_ago=timedelta(minutes=10))
    fetched = world.client.calls(call).fetch()
    assert fetched.status == "completed"
    assert fetched.end_time == world.emu.call(call).end_time.replace(microsecond=0)
    assert (
        world.client.api.v2010.accounts(world.account_sid).fetch().friendly_name == "Acme Support"
    )
    with pytest.raises(TwilioRestException) as err:
        world.client.calls("CA" + "0" * 32).fetch()
    assert err.value.code == 20404


def test_credentials_never_reach_logs_or_reprs(world: World) -> None:
    token = world.session.auth[1]
    world.session.get(world.tasks_url())
    EmulatorSession(world.emu.base_url, (world.account_sid, token + "x")).get(world.tasks_url())
    state = requests.get(f"{world.emu.base_url}/__emulator/state", timeout=10).text
    assert token not in repr(world.emu.request_log)
    assert token not in state
    assert token not in repr(world.emu.add_account("X"))


def test_wrong_method_is_405_and_unknown_route_404(world: World) -> None:
    resp = world.session.delete(world.tasks_url("WT" + "0" * 32))
    assert (resp.status_code, resp.json()["code"]) == (405, 20004)
    resp = world.session.get(f"{API}/2010-04-01/Accounts/{world.account_sid}/Calls/CA1")
    assert (resp.status_code, resp.json()["code"]) == (404, 20404)


def test_admin_endpoints_report_state_and_swap_faults(world: World) -> None:
    sid = world.emu.add_task(world.ws, "pending", attributes={"call_sid": "CA1"})
    world.session.post(world.tasks_url(sid), data={"AssignmentStatus": "canceled", "Reason": "x"})
    state = requests.get(f"{world.emu.base_url}/__emulator/state", timeout=10).json()
    assert set(state) >= {"tasks", "calls", "mutations", "platform_events", "stats"}
    (task,) = state["tasks"]
    assert (task["sid"], task["status"], task["revision"]) == (sid, "canceled", 1)
    assert json.loads(task["attributes"]) == {"call_sid": "CA1"}
    assert state["mutations"][0]["task_sid"] == sid
    assert state["stats"]["update_task"] == 1
    resp = requests.post(
        f"{world.emu.base_url}/__emulator/faults", json={"max_page_size": 7}, timeout=10
    )
    assert resp.status_code == 200
    assert world.emu.faults == Faults(max_page_size=7)
    bad = requests.post(f"{world.emu.base_url}/__emulator/faults", json={"nope": 1}, timeout=10)
    assert bad.status_code == 400


def test_start_is_idempotent_and_stop_restarts() -> None:
    emu = Emulator()
    url = emu.start()
    assert emu.start() == url
    assert url.startswith("http://127.0.0.1:")
    emu.stop()
    emu.stop()
    with pytest.raises(RuntimeError):
        _ = emu.base_url
