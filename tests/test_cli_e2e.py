"""The installed command against the emulator over real HTTP, through the real twilio library."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta

import pytest

from conftest import REASON_PREFIX, World, json_out, make_world, stuck_tasks_command
from emulator_client import TASKROUTER, EmulatorSession
from stuck_tasks.emulator import Faults
from terminal import run_in_terminal

CA = "CA" + "0" * 32


def voice(
    world: World, status: str, call_status: str = "completed", *, ended_ago: float = 600
) -> tuple[str, str]:
    call = world.emu.add_call(
        world.account_sid,
        status=call_status,
        ended_ago=timedelta(seconds=ended_ago)
        if call_status in {"completed", "busy", "failed", "no-answer", "canceled"}
        else None,
    )
    task = world.emu.add_task(
        world.workspace_sid,
        status=status,
        channel="voice",
        attributes={"call_sid": call, "direction": "inbound"},
    )
    return task, call


# ------------------------------------------------------------------ every row of the decision table


def test_yes_run_closes_exactly_the_stuck_tasks_and_the_summary_matches_the_final_state(
    outage: World,
):
    seed = outage.seed
    assert seed is not None
    result = outage.invoke("--yes", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json_out(result)
    final = {t.sid: t for t in outage.emu.tasks(outage.workspace_sid)}
    for sid, verdict in seed.expected.items():
        task = final[sid]
        if verdict == "cancel":
            assert task.status == "canceled", (sid, seed.kinds[sid])
        elif verdict == "complete":
            assert task.status == "completed", (sid, seed.kinds[sid])
        if verdict in {"cancel", "complete"}:
            assert task.reason is not None
            assert task.reason.startswith(REASON_PREFIX)
            assert doc["run_id"] in task.reason
    mutations = outage.emu.mutations
    assert {m.task_sid for m in mutations} == {
        s for s, v in seed.expected.items() if v in {"cancel", "complete"}
    }
    assert doc["closed"] == len(mutations)
    assert doc["to_close"]["cancel"] == sum(1 for v in seed.expected.values() if v == "cancel")
    assert doc["to_close"]["complete"] == sum(1 for v in seed.expected.values() if v == "complete")
    assert doc["examined"] == sum(1 for v in seed.expected.values() if v != "not-open")
    assert doc["failed"]["total"] == 0
    assert doc["skipped"]["total"] == 0
    # Every leave reason of the table shows up, and nothing else was touched.
    assert set(doc["left"]["by_reason"]) >= {
        "not-voice",
        "call-live",
        "call-ended-in-grace",
        "call-not-found",
        "no-evidence",
        "attributes-not-json",
        "attributes-not-object",
        "call-sid-not-string",
    }


def test_dry_run_sends_no_write_and_prints_the_plan(outage: World):
    result = outage.invoke("--dry-run")
    assert result.exit_code == 0, result.stderr
    assert outage.writes() == []
    assert outage.emu.mutations == []
    assert "Plan: " in result.stdout
    assert "Sample of tasks to close" in result.stdout
    assert "Dry run: nothing was changed" in result.stdout


def test_writes_start_only_after_the_listing_has_paged_to_the_end(outage: World):
    result = outage.invoke("--yes", "--quiet")
    assert result.exit_code == 0, result.stderr
    log = outage.emu.request_log
    lists = [r for r in log if r.method == "GET" and r.path.endswith("/Tasks")]
    posts = [r for r in log if r.method == "POST"]
    assert len(lists) >= 3
    assert posts
    assert min(p.started for p in posts) >= max(r.finished for r in lists)


def test_every_page_is_read_with_a_chat_task_first_and_mixed_channels():
    w = make_world(n_tasks=2600, seed=3)
    try:
        first = min(w.emu.tasks(w.workspace_sid), key=lambda t: (t.date_created, t.sid))
        assert first.channel == "chat"
        result = w.invoke("--dry-run", "--json")
        assert result.exit_code == 0, result.stderr
        doc = json_out(result)
        open_tasks = [
            t
            for t in w.emu.tasks(w.workspace_sid)
            if t.status in {"pending", "reserved", "assigned"}
        ]
        open_voice = [t for t in open_tasks if t.channel == "voice"]
        assert doc["examined"] == len(open_tasks)
        assert doc["api"]["requests"]["list_tasks"] == 3  # PageSize 1000, 2600+ open tasks
        fetched = {
            r.path.rsplit("/", 1)[1]
            for r in w.emu.request_log
            if r.method == "GET" and "/Tasks/WT" in r.path
        }
        assert fetched == {t.sid for t in open_voice}
        pages = [r for r in w.emu.request_log if r.path.endswith("/Tasks")]
        assert all(r.query.get("PageSize") == ["1000"] for r in pages)
        assert sorted(pages[0].query["AssignmentStatus"]) == ["assigned", "pending", "reserved"]
    finally:
        w.emu.stop()


# ------------------------------------------------------------------ confirmation


def test_without_a_terminal_and_without_yes_it_refuses_and_changes_nothing(world: World):
    voice(world, "pending")
    result = world.invoke()
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert world.writes() == []


def test_confirmation_on_a_terminal_defaults_to_no_and_yes_applies(world: World):
    task, _ = voice(world, "assigned")
    env = world.process_env()

    def answer(text: str) -> tuple[int, str]:
        return run_in_terminal([], env, keys=text.encode() + b"\r")

    code, screen = answer("")
    assert code == 0, screen
    assert "Acme Support" in screen
    assert "Acme Contact Center" in screen
    assert world.emu.task(task).status == "assigned"
    assert world.writes() == []
    code, screen = answer("y")
    assert code == 0, screen
    assert world.emu.task(task).status == "completed"


def test_a_task_that_changed_while_the_plan_was_read_is_skipped_not_overwritten(
    world: World, tmp_path
):
    # While the operator reads the plan, an agent updates one task in a way its status and its
    # evidence do not show (its priority): its ETag moves. It is skipped, the other is closed.
    changed, _ = voice(world, "assigned")
    other, _ = voice(world, "pending")
    agent = EmulatorSession(world.emu.base_url, (world.account_sid, world.auth_token))

    def an_agent_updates_it() -> None:
        url = f"{TASKROUTER}/v1/Workspaces/{world.workspace_sid}/Tasks/{changed}"
        assert agent.post(url, data={"Priority": "5"}).status_code == 200

    audit = tmp_path / "audit.jsonl"
    code, screen = run_in_terminal(
        ["--audit-log", str(audit)],
        world.process_env(),
        keys=b"y\r",
        at_question=an_agent_updates_it,
    )
    assert code == 0, screen
    assert world.emu.task(changed).status == "assigned"
    assert world.emu.task(other).status == "canceled"
    lines = {line["task_sid"]: line for line in map(json.loads, audit.read_text().splitlines())
             if line.get("type") == "task"}  # fmt: skip
    assert (lines[changed]["outcome"], lines[changed]["why"]) == ("skipped", "changed-since-read")
    assert lines[other]["outcome"] == "closed"


# ------------------------------------------------------------------ workspaces and credentials


def test_the_only_workspace_is_used_and_named(world: World):
    voice(world, "pending")
    result = world.invoke("--dry-run", TWILIO_WORKSPACE_SID=None)
    assert result.exit_code == 0, result.stderr
    assert "Acme Support" in result.stderr
    assert world.workspace_sid in result.stderr


def test_several_workspaces_and_none_chosen_lists_them_and_exits_2(world: World):
    other = world.emu.add_workspace(world.account_sid, friendly_name="Acme Sales")
    result = world.invoke("--dry-run", TWILIO_WORKSPACE_SID=None)
    assert result.exit_code == 2
    assert "Acme Sales" in result.stderr
    assert other.sid in result.stderr
    assert "Traceback" not in result.stderr


def test_workspace_by_friendly_name(world: World):
    task, _ = voice(world, "reserved")
    result = world.invoke(
        "--yes", "--json", "--workspace", "Acme Support", TWILIO_WORKSPACE_SID=None
    )
    assert result.exit_code == 0, result.stderr
    assert json_out(result)["workspace"]["sid"] == world.workspace_sid
    assert world.emu.task(task).status == "canceled"


@pytest.mark.parametrize("workspace", ["WS" + "f" * 32, "No Such Workspace"])
def test_unknown_workspace_is_one_line_and_exit_2(world: World, workspace: str):
    result = world.invoke("--dry-run", "--workspace", workspace, TWILIO_WORKSPACE_SID=None)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert workspace in result.stderr


def test_wrong_credentials_are_one_line_exit_2_and_never_echo_the_token(world: World):
    secret = "f" * 32
    result = world.invoke("--dry-run", TWILIO_AUTH_TOKEN=secret)
    assert result.exit_code == 2
    assert "credentials" in result.stderr
    assert result.stderr.count("\n") == 1
    assert secret not in result.stderr + result.stdout


def test_api_key_credentials_work(world: World):
    key = world.emu.add_api_key(world.account_sid)
    task, _ = voice(world, "pending")
    result = world.invoke(
        "--yes",
        "--quiet",
        TWILIO_AUTH_TOKEN=None,
        TWILIO_API_KEY=key.sid,
        TWILIO_API_SECRET=key.secret,
    )
    assert result.exit_code == 0, result.stderr
    assert world.emu.task(task).status == "canceled"
    assert key.secret not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account-sid", "AC123"], "account SID"),
        (["--task", "WT123"], "task SID"),
        (["--api-key", "KEY"], "API key SID"),
    ],
)
def test_malformed_sids_are_usage_errors(world: World, args: list[str], message: str):
    result = world.invoke("--dry-run", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert world.emu.request_log == []


# ------------------------------------------------------------------ --task mode


def test_task_mode_explains_each_task_and_closes_only_those(world: World):
    stuck, _ = voice(world, "assigned")
    live, _ = voice(world, "assigned", "in-progress")
    other, _ = voice(world, "pending")
    result = world.invoke("--yes", "--json", "--task", stuck, "--task", live)
    assert result.exit_code == 0, result.stderr
    doc = json_out(result)
    assert doc["examined"] == 2
    assert doc["closed"] == 1
    assert doc["left"]["by_reason"] == {"call-live": 1}
    assert world.emu.task(stuck).status == "completed"
    assert world.emu.task(live).status == "assigned"
    assert world.emu.task(other).status == "pending"
    assert not any(r.path.endswith("/Tasks") for r in world.emu.request_log)


# ------------------------------------------------------------------ the installed command


def test_installed_command_sandbox_run(tmp_path):
    proc = subprocess.run(
        [stuck_tasks_command(), "--sandbox", "--yes"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Done." in proc.stdout
    assert "closed" in proc.stdout
    assert list(tmp_path.glob("stuck-tasks-audit-*.jsonl"))


def test_installed_command_json_matches_emulator(outage: World):
    proc = outage.subprocess("--yes", "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["closed"] == len(outage.emu.mutations)
    closed_now = sum(
        1
        for t in outage.emu.tasks(outage.workspace_sid)
        if t.status in {"canceled", "completed"} and (t.reason or "").startswith(REASON_PREFIX)
    )
    assert doc["closed"] == closed_now
    assert proc.stderr == ""


def test_fault_free_second_run_finds_nothing_to_do(outage: World):
    assert outage.invoke("--yes", "--quiet").exit_code == 0
    before = len(outage.emu.mutations)
    result = outage.invoke("--yes", "--json", "--quiet")
    assert result.exit_code == 0
    assert json_out(result)["to_close"]["total"] == 0
    assert len(outage.emu.mutations) == before


def test_throttled_account_still_closes_everything():
    w = make_world(Faults(concurrency_limit=3), n_tasks=120, seed=5)
    try:
        result = w.invoke("--yes", "--json", "--quiet", "--concurrency", "12")
        assert result.exit_code == 0, result.stderr
        doc = json_out(result)
        assert doc["api"]["throttled_429"] > 0
        assert (
            doc["closed"]
            == len(w.emu.mutations)
            == len(w.seed.with_verdict("cancel")) + len(w.seed.with_verdict("complete"))
        )
    finally:
        w.emu.stop()


def test_a_write_that_never_lands_is_reported_failed_with_exit_3_and_nothing_changed(world: World):
    task, _ = voice(world, "pending")
    world.emu.set_faults(Faults(drop_before_write_rate=1.0))
    result = world.invoke("--yes", "--json")
    assert result.exit_code == 3, result.stderr
    doc = json_out(result)
    assert doc["status"] == "partial"
    assert doc["failed"] == {"total": 1, "by_reason": {"transport": 1}}
    assert doc["closed"] == 0
    assert world.emu.mutations == []
    assert world.emu.task(task).status == "pending"
    posts = [r for r in world.emu.request_log if r.method == "POST"]
    assert len(posts) == 6  # bounded attempts, each after a re-read showed the task unchanged


def test_a_write_that_landed_but_was_answered_500_is_counted_closed(world: World):
    task, _ = voice(world, "assigned")
    world.emu.set_faults(Faults(error_after_write_rate=1.0))
    result = world.invoke("--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert json_out(result)["closed"] == 1
    assert len(world.emu.mutations) == 1
    assert world.emu.task(task).status == "completed"
