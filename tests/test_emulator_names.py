"""TaskQueues and Workflows: the lists a client resolves ``--task-queue``/``--workflow`` names with."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from twilio.base.exceptions import TwilioException

from emulator_client import API, TASKROUTER, EmulatorSession, emulator_client
from stuck_tasks.emulator import Emulator, Faults


@dataclass
class World:
    emu: Emulator
    session: EmulatorSession
    account_sid: str
    ws: str

    def url(self, collection: str, ws: str | None = None) -> str:
        return f"{TASKROUTER}/v1/Workspaces/{ws or self.ws}/{collection}"

    def names(self, collection: str, **params: Any) -> list[str]:
        resp = self.session.get(self.url(collection), params=params)
        assert resp.status_code == 200, resp.text
        key = "task_queues" if collection == "TaskQueues" else "workflows"
        return [item["friendly_name"] for item in resp.json()[key]]


@pytest.fixture
def world() -> Iterator[World]:
    with Emulator() as emu:
        acct = emu.add_account("Acme")
        ws = emu.add_workspace(acct.sid, "Support").sid
        yield World(emu, EmulatorSession(emu.base_url, (acct.sid, acct.auth_token)), acct.sid, ws)


def test_the_queues_and_workflows_tasks_name_are_listed_with_the_tasks_sids(world: World) -> None:
    emu = world.emu
    sales = emu.add_task(world.ws, queue="Sales", workflow="Default")
    emu.add_task(world.ws, queue="Billing", workflow="Default")
    emu.add_task(world.ws, queue="Sales", workflow="After hours")
    task = world.session.get(world.url("Tasks") + f"/{sales}").json()
    queues = world.session.get(world.url("TaskQueues")).json()["task_queues"]
    flows = world.session.get(world.url("Workflows")).json()["workflows"]
    assert [q["friendly_name"] for q in queues] == ["Sales", "Billing"]
    assert [w["friendly_name"] for w in flows] == ["Default", "After hours"]
    assert queues[0]["sid"] == task["task_queue_sid"]
    assert flows[0]["sid"] == task["workflow_sid"]
    assert task["links"]["task_queue"] == queues[0]["url"]
    assert task["links"]["workflow"] == flows[0]["url"]
    assert [q.sid for q in emu.task_queues(world.ws)] == [q["sid"] for q in queues]
    assert [w.sid for w in emu.workflows(world.ws)] == [w["sid"] for w in flows]


def test_adding_a_queue_or_workflow_is_idempotent_per_name(world: World) -> None:
    emu = world.emu
    task = emu.add_task(world.ws, queue="Sales", workflow="Default")
    sales = emu.add_task_queue(world.ws, "Sales")
    assert sales == emu.add_task_queue(world.ws, "Sales")
    assert sales.sid == world.session.get(world.url("Tasks") + f"/{task}").json()["task_queue_sid"]
    support = emu.add_task_queue(world.ws, "Support")
    assert support.sid != sales.sid
    assert support.sid.startswith("WQ")
    assert len(support.sid) == 34
    flow = emu.add_workflow(world.ws, "Overflow")
    assert flow == emu.add_workflow(world.ws, "Overflow")
    assert flow.sid.startswith("WW")
    assert flow.default_queue_sid == sales.sid  # the workspace's oldest queue
    assert emu.add_workflow(world.ws, "Default").sid != flow.sid
    assert world.names("TaskQueues") == ["Sales", "Support"]
    assert world.names("Workflows") == ["Default", "Overflow"]
    later = emu.add_task(world.ws, queue="Support")
    assert emu.task(later).queue == "Support"
    assert world.names("TaskQueues") == ["Sales", "Support"]


def test_queues_and_workflows_belong_to_one_workspace(world: World) -> None:
    emu = world.emu
    other_ws = emu.add_workspace(world.account_sid, "Sales").sid
    here = emu.add_task_queue(world.ws, "Sales")
    there = emu.add_task_queue(other_ws, "Sales")
    assert here.sid != there.sid
    emu.add_workflow(other_ws, "Default")
    assert world.names("TaskQueues") == ["Sales"]
    assert world.names("Workflows") == []
    assert world.emu.workflows(world.ws) == []
    with pytest.raises(KeyError):
        emu.add_task_queue("WS" + "0" * 32, "Sales")
    with pytest.raises(KeyError):
        emu.add_workflow("WS" + "0" * 32, "Default")


@pytest.mark.parametrize("collection", ["TaskQueues", "Workflows"])
def test_another_accounts_or_an_unknown_workspace_is_not_found(
    world: World, collection: str
) -> None:
    other = world.emu.add_account("Other")
    their_ws = world.emu.add_workspace(other.sid).sid
    world.emu.add_task(their_ws, queue="Sales", workflow="Default")
    for ws in (their_ws, "WS" + "0" * 32, "nope"):
        resp = world.session.get(world.url(collection, ws))
        assert (resp.status_code, resp.json()["code"]) == (404, 20404), ws
    # Their own credentials see them; a path on another product's host is not found.
    theirs = EmulatorSession(world.emu.base_url, (other.sid, other.auth_token))
    assert theirs.get(world.url(collection, their_ws)).status_code == 200
    wrong_host = theirs.get(f"{API}/v1/Workspaces/{their_ws}/{collection}")
    assert (wrong_host.status_code, wrong_host.json()["code"]) == (404, 20404)


@pytest.mark.parametrize("collection", ["TaskQueues", "Workflows"])
def test_friendly_name_matches_exactly(world: World, collection: str) -> None:
    add = world.emu.add_task_queue if collection == "TaskQueues" else world.emu.add_workflow
    for name in ("Sales", "sales", "Sales EMEA"):
        add(world.ws, name)
    assert world.names(collection, FriendlyName="Sales") == ["Sales"]
    assert world.names(collection, FriendlyName="sales") == ["sales"]
    assert world.names(collection, FriendlyName="SALES") == []
    assert world.names(collection, FriendlyName="Sale") == []
    assert world.names(collection) == ["Sales", "sales", "Sales EMEA"]
    meta = world.session.get(world.url(collection), params={"FriendlyName": "Sales EMEA"}).json()
    assert "FriendlyName=Sales+EMEA" in meta["meta"]["url"]


@pytest.mark.parametrize(
    ("collection", "key"), [("TaskQueues", "task_queues"), ("Workflows", "workflows")]
)
def test_lists_page_like_the_task_list(world: World, collection: str, key: str) -> None:
    add = world.emu.add_task_queue if collection == "TaskQueues" else world.emu.add_workflow
    names = [f"Q{i}" for i in range(5)]
    for name in names:
        add(world.ws, name)
    seen: list[str] = []
    url: str | None = world.url(collection) + "?PageSize=2"
    pages = 0
    while url is not None:
        body = world.session.get(url).json()
        assert body["meta"]["page"] == pages
        assert body["meta"]["page_size"] == 2
        seen += [item["friendly_name"] for item in body[key]]
        url = body["meta"]["next_page_url"]
        pages += 1
    assert (seen, pages) == (names, 3)
    back = world.session.get(body["meta"]["previous_page_url"]).json()
    assert [item["friendly_name"] for item in back[key]] == ["Q2", "Q3"]
    for params, code in (
        ({"PageSize": "1001"}, 20007),
        ({"PageSize": "0"}, 20001),
        ({"Page": "1"}, 20001),
        ({"PageToken": "bogus"}, 20001),
    ):
        resp = world.session.get(world.url(collection), params=params)
        assert (resp.status_code, resp.json()["code"]) == (400, code), params
    world.emu.set_faults(Faults(max_page_size=3))
    capped = world.session.get(world.url(collection), params={"PageSize": 1000}).json()
    assert len(capped[key]) == 3
    assert capped["meta"]["page_size"] == 3
    assert capped["meta"]["next_page_url"] is not None


def test_unsupported_queue_filters_are_refused_and_worker_sid_matches_nothing(
    world: World,
) -> None:
    world.emu.add_task_queue(world.ws, "Sales")
    for params in ({"Ordering": "DateUpdated:asc"}, {"EvaluateWorkerAttributes": "1==1"}):
        resp = world.session.get(world.url("TaskQueues"), params=params)
        assert (resp.status_code, resp.json()["code"]) == (400, 20001), params
    assert world.names("TaskQueues", WorkerSid="WK" + "0" * 32) == []
    assert world.names("TaskQueues", FriendlyName="Sales") == ["Sales"]


def test_the_twilio_library_reads_both_lists(world: World) -> None:
    world.emu.add_task(world.ws, queue="Sales", workflow="Default")
    support = world.emu.add_task_queue(world.ws, "Support")
    acct = world.session.auth
    assert isinstance(acct, tuple)
    client = emulator_client(world.emu.base_url, acct[0], acct[1], world.account_sid)
    workspace = client.taskrouter.v1.workspaces(world.ws)
    queues = workspace.task_queues.list(friendly_name="Support")
    assert [(q.sid, q.friendly_name, q.task_order) for q in queues] == [
        (support.sid, "Support", "FIFO")
    ]
    assert [q.friendly_name for q in workspace.task_queues.list(page_size=1)] == [
        "Sales",
        "Support",
    ]
    (flow,) = workspace.workflows.list()
    assert (flow.friendly_name, flow.task_reservation_timeout) == ("Default", 120)
    # twilio's list pages raise a bare TwilioException (message, response), not a
    # TwilioRestException.
    with pytest.raises(TwilioException) as err:
        client.taskrouter.v1.workspaces("WS" + "0" * 32).task_queues.list()
    assert err.value.args[1].status_code == 404


def test_restricted_keys_need_the_queue_or_workflow_permission(world: World) -> None:
    emu = world.emu
    tasks_only = emu.add_api_key(
        world.account_sid,
        kind="restricted",
        permissions=[
            "/twilio/taskrouter/workspaces/read",
            "/twilio/taskrouter/workspaces/tasks/read",
        ],
    )
    both = emu.add_api_key(
        world.account_sid,
        kind="restricted",
        permissions=[
            "/twilio/taskrouter/workspaces/task-queues/read",
            "/twilio/taskrouter/workspaces/workflows/read",
        ],
    )
    for collection in ("TaskQueues", "Workflows"):
        refused = EmulatorSession(emu.base_url, (tasks_only.sid, tasks_only.secret))
        resp = refused.get(world.url(collection))
        assert (resp.status_code, resp.json()["code"]) == (403, 70051)
        allowed = EmulatorSession(emu.base_url, (both.sid, both.secret))
        assert allowed.get(world.url(collection)).status_code == 200


def test_queue_and_workflow_lists_have_their_own_rate_limits(world: World) -> None:
    limits = (("TaskQueue-List", 1 / 60), ("Workflow-List", 1 / 60))
    world.emu.set_faults(Faults(taskrouter_limits=limits, taskrouter_window=60))
    for collection, key in (("TaskQueues", "TaskQueue-List"), ("Workflows", "Workflow-List")):
        first = world.session.get(world.url(collection))
        assert first.status_code == 200
        assert first.headers["X-Rate-Limit-Config"] == f"{key};window=60"
        assert first.headers["X-Rate-Limit-Remaining"] == "0"
        second = world.session.get(world.url(collection))
        assert (second.status_code, second.json()["code"]) == (429, 20429)
    assert world.session.get(world.url("Tasks")).status_code == 200  # Task-List is unlimited
    stats = world.emu.stats()
    assert (stats["list_task_queues"], stats["list_workflows"], stats["429"]) == (2, 2, 2)
