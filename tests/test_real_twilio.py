"""Issue 10: the tool against an emulator as strict as Twilio.

Credentials of every kind, a missing permission, the wrong account, conferences since the
2026-09-30 list change, reserved messaging tasks on a closed channel, the Account body's
auth_token, Twilio's clock, hosts and regions, and both shapes of list pages.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import World, json_out, make_world
from stuck_tasks.emulator import Emulator, Faults
from stuck_tasks.transport import PERMISSIONS

VOICE_PERMISSIONS = (
    "/twilio/taskrouter/workspaces/read",
    "/twilio/taskrouter/workspaces/tasks/read",
    "/twilio/taskrouter/workspaces/tasks/update",
    "/twilio/voice/calls/read",
    "/twilio/voice/conferences/read",
)


def stuck(world: World, status: str = "pending", *, ended_ago: float = 600) -> str:
    call = world.emu.add_call(
        world.account_sid, "completed", ended_ago=timedelta(seconds=ended_ago)
    )
    return world.emu.add_task(world.workspace_sid, status, "voice", {"call_sid": call})


def with_key(world: World, key, **env: str | None) -> dict[str, str | None]:
    return {
        "TWILIO_API_KEY": key.sid,
        "TWILIO_API_SECRET": key.secret,
        "TWILIO_AUTH_TOKEN": None,
        **env,
    }


def kinds(world: World) -> list[str]:
    return [r.path for r in world.emu.request_log]


def test_the_tool_and_the_emulator_agree_on_every_permission_name():
    from stuck_tasks.emulator import PERMISSIONS as EMULATED

    renames = {  # the tool names requests by what it does, the emulator by its routes
        "fetch_channel": "fetch_interaction_channel",
        "update_channel": "update_interaction_channel",
        "list_participants": "list_interaction_participants",
        "update_participant": "update_interaction_participant",
    }
    for kind, permission in PERMISSIONS.items():
        route = renames.get(kind, kind)
        if route in EMULATED:
            assert EMULATED[route] == permission, kind


# ------------------------------------------------------------------ every credential kind


@pytest.mark.parametrize(
    ("kind", "permissions"),
    [("main", ()), ("standard", ()), ("restricted", VOICE_PERMISSIONS)],
)
def test_every_api_key_kind_cleans_a_mixed_workspace(kind, permissions):
    w = make_world(n_tasks=150, seed=21)
    try:
        key = w.emu.add_api_key(w.account_sid, kind=kind, permissions=permissions)
        result = w.invoke("--yes", "--json", "--quiet", **with_key(w, key))
        assert result.exit_code == 0, result.stderr
        expected = set(w.seed.with_verdict("cancel")) | set(w.seed.with_verdict("complete"))
        assert {m.task_sid for m in w.emu.mutations} == expected
        doc = json_out(result)
        assert doc["closed"] == len(expected)
        assert doc["connection"]["credentials"].startswith(f"API key {key.sid}")
        # A Standard or Restricted key may not read /Accounts: the tool never asks.
        assert not any(p.endswith(f"/Accounts/{w.account_sid}.json") for p in kinds(w))
        assert doc["account"] == {"sid": w.account_sid, "friendly_name": None}
    finally:
        w.emu.stop()


def test_the_auth_token_cleans_and_reads_the_account_name(outage: World):
    result = outage.invoke("--yes", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert json_out(result)["account"]["friendly_name"] == "Acme Contact Center"


def test_a_dotenv_with_both_a_token_and_a_key_uses_the_key(outage: World, tmp_path: Path):
    key = outage.emu.add_api_key(outage.account_sid)
    (tmp_path / ".env").write_text(
        f"TWILIO_ACCOUNT_SID={outage.account_sid}\nTWILIO_AUTH_TOKEN={outage.auth_token}\n"
        f"TWILIO_API_KEY={key.sid}\nTWILIO_API_SECRET={key.secret}\n",
        encoding="utf-8",
    )
    result = outage.invoke(
        "--yes",
        "--json",
        "--quiet",
        TWILIO_ACCOUNT_SID=None,
        TWILIO_AUTH_TOKEN=None,
    )
    assert result.exit_code == 0, result.stderr
    doc = json_out(result)
    assert doc["connection"]["credentials"] == (
        f"API key {key.sid} for account {outage.account_sid}, from ./.env"
    )
    assert doc["closed"] > 0
    assert not any(p.endswith(f"/Accounts/{outage.account_sid}.json") for p in kinds(outage))


# ------------------------------------------------------------------ a missing permission


@pytest.mark.parametrize(
    ("missing", "request_kind"),
    [
        ("/twilio/taskrouter/workspaces/tasks/update", "update"),
        ("/twilio/voice/calls/read", "fetch call"),
    ],
)
def test_a_missing_permission_stops_the_run_at_its_first_refusal(
    world: World, missing, request_kind
):
    for status in ("pending", "assigned", "reserved"):
        for _ in range(4):
            stuck(world, status)
    granted = tuple(p for p in VOICE_PERMISSIONS if p != missing)
    key = world.emu.add_api_key(world.account_sid, kind="restricted", permissions=granted)
    result = world.invoke(
        "--yes", "--json", "--quiet", "--concurrency", "1", **with_key(world, key)
    )
    assert result.exit_code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert missing in errors[0]
    assert request_kind in errors[0]
    refused = [r for r in world.emu.request_log if r.code == 70051]
    assert len(refused) == 1  # the first refusal stopped that work; not one per task
    assert world.emu.mutations == []
    doc = json_out(result)
    assert doc["status"] == "error"


def test_a_restricted_key_cannot_clean_messaging_and_says_why(world: World):
    refs = world.emu.add_interaction(
        world.account_sid, workspace_sid=world.workspace_sid, channel_status="closed"
    )
    key = world.emu.add_api_key(world.account_sid, kind="restricted", permissions=VOICE_PERMISSIONS)
    result = world.invoke(
        "--yes", "--channels", "voice,messaging", "--quiet", **with_key(world, key)
    )
    assert result.exit_code == 2
    assert "no Restricted-key permission grants it" in result.stderr
    assert world.emu.task(refs.task_sid).status == "assigned"


# ------------------------------------------------------------------ the wrong account


def test_a_key_of_another_account_is_caught_before_any_write(world: World):
    stuck(world)
    other = world.emu.add_account("Other Center")
    key = world.emu.add_api_key(world.account_sid)
    result = world.invoke(
        "--yes", TWILIO_ACCOUNT_SID=other.sid, TWILIO_WORKSPACE_SID=None, **with_key(world, key)
    )
    assert result.exit_code == 2
    error = result.stderr.strip().splitlines()[-1]
    assert world.account_sid in error
    assert other.sid in error
    assert world.writes() == []
    # Nothing was asked of another account's v2010 paths (Twilio answers those 401/20003).
    assert not any(r.path.startswith("/2010-04-01/") for r in world.emu.request_log)


# ------------------------------------------------------------------ conferences since 2026-09-30


def outbound(world: World, status: str, conference: str | None, ended_ago: float = 900) -> str:
    task = world.emu.add_task(
        world.workspace_sid, status, "voice", {"outbound_to": "+15550100", "direction": "outbound"}
    )
    if conference is not None:
        world.emu.add_conference(
            world.account_sid,
            friendly_name=task,
            status=conference,
            ended_ago=timedelta(seconds=ended_ago) if conference == "completed" else None,
        )
    return task


def test_outbound_tasks_are_judged_by_the_conference_named_after_them(world: World):
    ended = outbound(world, "assigned", "completed")
    live = outbound(world, "assigned", "in-progress")
    starting = outbound(world, "pending", "init")
    none = outbound(world, "assigned", None)
    result = world.invoke("--yes", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    statuses = world.statuses()
    assert statuses[ended] == "completed"
    assert (statuses[live], statuses[starting], statuses[none]) == (
        "assigned",
        "pending",
        "assigned",
    )
    left = json_out(result)["left"]["by_reason"]
    assert left == {"conference-live": 2, "no-evidence": 1}
    asked = [
        r.query.get("Status") for r in world.emu.request_log if r.path.endswith("/Conferences.json")
    ]
    assert all(status is not None for status in asked)  # never the in-progress-only default


# ------------------------------------------------------------------ reserved messaging, closed channel


@pytest.mark.parametrize(
    ("reading", "after", "why"),
    [("accept", "canceled", "closed"), ("refuse", "reserved", "interaction-not-open")],
)
def test_a_reserved_task_on_a_closed_channel_is_closed_or_left_as_twilio_answers(
    reading, after, why
):
    w = make_world(Faults(closed_channel_close=reading))
    try:
        refs = w.emu.add_interaction(
            w.account_sid,
            workspace_sid=w.workspace_sid,
            channel_status="closed",
            agent_status=None,
            task={"status": "reserved"},
        )
        result = w.invoke("--yes", "--json", "--quiet", "--channels", "voice,messaging")
        assert result.exit_code == 0, result.stderr
        assert w.emu.task(refs.task_sid).status == after
        doc = json_out(result)
        assert doc["to_close"]["close_channel"] == 1
        if why == "closed":
            assert doc["closed"] == 1
        else:
            assert doc["skipped"]["by_reason"] == {"interaction-not-open": 1}
        closes = [x for x in w.emu.request_log if x.method == "POST"]
        assert len(closes) == 1
        assert json.loads(closes[0].form["Routing"]) == {"status": "closed"}
    finally:
        w.emu.stop()


# ------------------------------------------------------------------ the Account's auth_token


def test_the_accounts_auth_token_appears_nowhere(outage: World, tmp_path: Path):
    audit, plan = tmp_path / "audit.jsonl", tmp_path / "plan.json"
    runs = [
        outage.invoke("--dry-run", "--json", "--audit-log", str(audit)),
        outage.invoke("--save-plan", str(plan), "--verbose"),
        outage.invoke("--yes", "--verbose"),
    ]
    token = outage.auth_token
    assert any(r.path.endswith(".json") and "/Accounts/" in r.path for r in outage.emu.request_log)
    for result in runs:
        assert result.exit_code == 0, result.stderr
        assert token not in result.stdout
        assert token not in result.stderr
    for path in [audit, plan, *tmp_path.glob("stuck-tasks-audit-*.jsonl")]:
        assert token not in path.read_text(encoding="utf-8")


# ------------------------------------------------------------------ Twilio's clock


def test_a_fast_local_clock_never_closes_a_task_early():
    # Twilio's clock is 5 minutes behind ours: our clock runs 5 minutes ahead.
    w = make_world(Faults(clock_offset=-300))
    try:
        early = stuck(w, ended_ago=60)  # ended 1 minute ago on Twilio's clock: in --grace
        due = stuck(w, ended_ago=200)  # 3m20s ago: past --grace
        result = w.invoke("--yes", "--json", "--quiet", "--grace", "2m")
        assert result.exit_code == 0, result.stderr
        assert w.statuses()[early] == "pending"  # by our clock it ended 6 minutes ago
        assert w.statuses()[due] == "canceled"
        assert json_out(result)["left"]["by_reason"] == {"call-ended-in-grace": 1}
        for m in w.emu.mutations:
            assert m.at - m.call_end_at_write >= timedelta(minutes=2)
    finally:
        w.emu.stop()


# ------------------------------------------------------------------ hosts and regions


def test_region_and_edge_reach_exactly_the_regional_hosts():
    emu = Emulator()
    account = emu.add_account("Dublin Center", region="ie1")
    workspace = emu.add_workspace(account.sid, "Dublin Support")
    call = emu.add_call(account.sid, "completed")
    task = emu.add_task(workspace.sid, "pending", "voice", {"call_sid": call})
    emu.start()
    w = World(emu, account.sid, account.auth_token, workspace.sid, "Dublin Support")
    try:
        result = w.invoke("--yes", "--quiet", "--region", "ie1", "--edge", "dublin")
        assert result.exit_code == 0, result.stderr
        assert emu.task(task).status == "canceled"
        hosts = {r.host for r in emu.request_log}
        assert hosts <= {"taskrouter.dublin.ie1.twilio.com", "api.dublin.ie1.twilio.com"}
        assert "taskrouter.dublin.ie1.twilio.com" in hosts
        # Without the region, US1 refuses IE1 credentials: one line, exit 2, nothing changed.
        emu.clear_request_log()
        other = emu.add_task(workspace.sid, "pending", "voice", {"call_sid": call})
        refused = w.invoke("--yes", "--quiet")
        assert refused.exit_code == 2
        assert "refused the credentials" in refused.stderr
        assert emu.task(other).status == "pending"
    finally:
        emu.stop()


# ------------------------------------------------------------------ both shapes of list pages


@pytest.mark.parametrize("listed", [False, True])
def test_both_list_page_shapes_clean_the_same_tasks(listed):
    w = make_world(Faults(max_page_size=100, list_attributes=listed), n_tasks=300, seed=7)
    try:
        result = w.invoke("--yes", "--json", "--quiet")
        assert result.exit_code == 0, result.stderr
        expected = set(w.seed.with_verdict("cancel")) | set(w.seed.with_verdict("complete"))
        assert {m.task_sid for m in w.emu.mutations} == expected
        fetches = json_out(result)["api"]["requests"]["fetch_task"]
        open_voice = sum(
            1 for t in w.emu.tasks(w.workspace_sid) if t.channel == "voice" and t.history
        ) + sum(
            1
            for s, v in w.seed.expected.items()
            if v == "leave" and w.emu.task(s).channel == "voice"
        )
        if listed:
            # The listed attributes decide the tasks that are left without a fetch; the tasks
            # to close are read once, right before the write (that read gives the ETag).
            assert fetches == len(expected)
        else:
            assert fetches >= len(expected)
            assert fetches <= open_voice
    finally:
        w.emu.stop()
