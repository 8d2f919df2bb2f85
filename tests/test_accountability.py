"""Issue 4: audit log, run id in the reason, saved plans, guards, reading a run back."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from conftest import World, json_out, make_world
from stuck_tasks.emulator import Faults


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_audit_log_matches_the_emulator_line_for_line_and_holds_no_secret(outage: World, tmp_path):
    key = outage.emu.add_api_key(outage.account_sid)
    audit = tmp_path / "audit.jsonl"
    result = outage.invoke(
        "--yes",
        "--json",
        "--audit-log",
        str(audit),
        TWILIO_AUTH_TOKEN=None,
        TWILIO_API_KEY=key.sid,
        TWILIO_API_SECRET=key.secret,
    )
    assert result.exit_code == 0, result.stderr
    text = audit.read_text()
    assert key.secret not in text
    assert outage.auth_token not in text
    lines = read_lines(audit)
    header, footer, tasks = lines[0], lines[-1], lines[1:-1]
    assert header["type"] == "header"
    assert footer["type"] == "footer"
    assert header["account_sid"] == outage.account_sid
    assert header["workspace_sid"] == outage.workspace_sid
    assert header["workspace_name"] == "Acme Support"
    assert header["dry_run"] is False
    assert {t["type"] for t in tasks} == {"task"}
    assert len(tasks) == json_out(result)["examined"] == len({t["task_sid"] for t in tasks})
    closed = {t["task_sid"] for t in tasks if t["outcome"] == "closed"}
    assert closed == {m.task_sid for m in outage.emu.mutations}
    posts = {
        r.path.rsplit("/", 1)[1]
        for r in outage.emu.request_log
        if r.method == "POST" and r.status == 200
    }
    assert closed == posts
    for t in tasks:
        for key_name in (
            "time",
            "task_sid",
            "status_before",
            "channel",
            "queue",
            "age_seconds",
            "call_sid",
            "call_status",
            "call_ended_at",
            "decision",
            "reason",
            "outcome",
            "error_code",
            "attempts",
            "status_after",
        ):
            assert key_name in t
    # The run id ties TaskRouter's own history to this log.
    for m in outage.emu.mutations:
        assert f"(stuck-tasks run {header['run_id']})" in (m.reason or "")
    assert footer["closed"] == len(closed)


def test_default_audit_log_path_is_printed(outage: World, tmp_path):
    result = outage.invoke("--yes")
    assert result.exit_code == 0, result.stderr
    logs = list(tmp_path.glob("stuck-tasks-audit-*.jsonl"))
    assert len(logs) == 1
    assert logs[0].name in result.stdout


def test_dry_run_with_audit_log_records_a_preview(outage: World, tmp_path):
    audit = tmp_path / "preview.jsonl"
    result = outage.invoke("--dry-run", "--audit-log", str(audit))
    assert result.exit_code == 0
    lines = read_lines(audit)
    assert lines[0]["dry_run"] is True
    assert {t["outcome"] for t in lines[1:-1]} <= {"left", "not-attempted"}
    assert outage.emu.mutations == []


def test_summarize_reproduces_the_run_summary(outage: World, tmp_path):
    audit = tmp_path / "a.jsonl"
    run = outage.invoke("--yes", "--json", "--audit-log", str(audit))
    again = outage.invoke(
        "--summarize", str(audit), "--json", TWILIO_ACCOUNT_SID=None, TWILIO_AUTH_TOKEN=None
    )
    assert again.exit_code == 0, again.stderr
    first, second = json_out(run), json_out(again)
    for key in (
        "run_id",
        "status",
        "exit_code",
        "examined",
        "to_close",
        "closed",
        "skipped",
        "failed",
        "left",
        "not_attempted",
        "api",
    ):
        assert first[key] == second[key], key
    text = outage.invoke("--summarize", str(audit))
    assert text.exit_code == 0
    assert first["run_id"] in text.stdout


def test_summarize_rejects_a_file_that_is_not_an_audit_log(world: World, tmp_path):
    bogus = tmp_path / "x.jsonl"
    bogus.write_text("hello\n")
    result = world.invoke("--summarize", str(bogus))
    assert result.exit_code == 2
    assert "audit log" in result.stderr


# ------------------------------------------------------------------ saved plans


def test_saved_plan_then_apply_skips_what_changed_in_between(outage: World, tmp_path):
    plan = tmp_path / "plan.json"
    saved = outage.invoke("--save-plan", str(plan))
    assert saved.exit_code == 0, saved.stderr
    assert outage.emu.mutations == []
    document = json.loads(plan.read_text())
    to_close = [t["task_sid"] for t in document["tasks"]]
    assert to_close
    changed = to_close[0]
    wrapping = next(
        t["task_sid"]
        for t in document["tasks"]
        if t["status"] == "assigned" and t["task_sid"] != changed
    )
    outage.emu.platform_close(changed)
    outage.emu.platform_wrap(wrapping)
    result = outage.invoke("--apply-plan", str(plan), "--yes", "--json", TWILIO_WORKSPACE_SID=None)
    assert result.exit_code == 0, result.stderr
    doc = json_out(result)
    assert doc["closed"] == len(to_close) - 2
    assert doc["skipped"]["total"] == 2
    assert {m.task_sid for m in outage.emu.mutations} == set(to_close) - {changed, wrapping}
    # Applying a saved plan lists nothing: it acts on exactly the plan's tasks.
    posts = [r for r in outage.emu.request_log if r.method == "POST"]
    assert {p.path.rsplit("/", 1)[1] for p in posts} <= set(to_close)


def test_a_plan_for_another_workspace_is_refused(outage: World, tmp_path):
    plan = tmp_path / "plan.json"
    assert outage.invoke("--save-plan", str(plan)).exit_code == 0
    other = outage.emu.add_workspace(outage.account_sid, friendly_name="Elsewhere")
    result = outage.invoke("--apply-plan", str(plan), "--yes", "--workspace", other.sid)
    assert result.exit_code == 2
    assert "workspace" in result.stderr
    assert outage.emu.mutations == []


def test_a_stale_plan_is_refused(outage: World, tmp_path):
    plan = tmp_path / "plan.json"
    assert outage.invoke("--save-plan", str(plan)).exit_code == 0
    document = json.loads(plan.read_text())
    document["created_at"] = (datetime.now(timezone.utc) - timedelta(hours=2)).isoformat()
    plan.write_text(json.dumps(document))
    result = outage.invoke("--apply-plan", str(plan), "--yes")
    assert result.exit_code == 2
    assert "--max-plan-age" in result.stderr
    assert outage.emu.mutations == []
    assert outage.invoke("--apply-plan", str(plan), "--yes", "--max-plan-age", "3h").exit_code == 0
    assert outage.emu.mutations


def test_max_changes_holds_for_a_saved_plan_too(outage: World, tmp_path):
    plan = tmp_path / "plan.json"
    assert outage.invoke("--save-plan", str(plan), "--max-changes", "100000").exit_code == 0
    count = len(json.loads(plan.read_text())["tasks"])
    refused = outage.invoke("--apply-plan", str(plan), "--yes", "--max-changes", "5")
    assert refused.exit_code == 2
    assert f"closes {count} tasks, more than --max-changes 5" in refused.stderr
    assert outage.writes() == []


# ------------------------------------------------------------------ guards


def test_max_changes_refuses_and_its_override_works(outage: World):
    result = outage.invoke("--yes", "--max-changes", "5")
    assert result.exit_code == 2
    assert "--max-changes" in result.stderr
    assert outage.emu.mutations == []
    # A rehearsal says what the real run will meet, with the same numbers.
    rehearsal = outage.invoke("--dry-run", "--max-changes", "5")
    assert rehearsal.exit_code == 0
    assert "a real run would refuse" in rehearsal.stdout
    refused = re.search(r"closes (\d+) tasks", result.stderr)
    rehearsed = re.search(r"closes (\d+) tasks", rehearsal.stdout)
    assert refused
    assert rehearsed
    assert refused.group(1) == rehearsed.group(1)
    result = outage.invoke("--yes", "--max-changes", "100000")
    assert result.exit_code == 0
    assert outage.emu.mutations


def test_unhealthy_call_lookups_refuse_and_the_override_works():
    w = make_world(n_tasks=150, seed=2)
    try:
        stuck = set(w.seed.with_verdict("cancel")) | set(w.seed.with_verdict("complete"))
        # Make a third of the calls unanswerable: their lookups fail with 500s after retries.
        w.emu.set_faults(Faults(error_rate=0.0))
        broken = sorted(stuck)[: len(stuck) // 3]
        for sid in broken:
            call_sid = w.seed.call_sids[sid]
            w.emu.break_call(call_sid)
        result = w.invoke("--yes", "--json", "--quiet")
        assert result.exit_code == 2, result.stderr
        assert "call lookups failed" in result.stderr
        assert w.emu.mutations == []
        result = w.invoke("--yes", "--json", "--quiet", "--max-lookup-failures", "1")
        assert result.exit_code == 0, result.stderr
        assert {m.task_sid for m in w.emu.mutations} == stuck - set(broken)
    finally:
        w.emu.stop()


def test_calls_of_another_account_refuse_and_the_override_works(world: World):
    other = world.emu.add_account(friendly_name="Subaccount")
    for _ in range(30):
        call = world.emu.add_call(other.sid, status="completed", ended_ago=timedelta(minutes=30))
        world.emu.add_task(
            world.workspace_sid, status="pending", channel="voice", attributes={"call_sid": call}
        )
    result = world.invoke("--yes")
    assert result.exit_code == 2
    assert "not found" in result.stderr
    assert "--allow-missing-calls" in result.stderr
    result = world.invoke("--yes", "--json", "--allow-missing-calls")
    assert result.exit_code == 0
    assert json_out(result)["to_close"]["total"] == 0  # 404 is never proof
    assert world.emu.mutations == []


def test_the_prompt_names_account_and_workspace(world: World):
    call = world.emu.add_call(
        world.account_sid, status="completed", ended_ago=timedelta(minutes=30)
    )
    world.emu.add_task(
        world.workspace_sid, status="pending", channel="voice", attributes={"call_sid": call}
    )
    result = world.invoke("--dry-run")
    assert result.exit_code == 0
    assert "Acme Support" in result.stdout
    assert "Acme Contact Center" in result.stdout


def test_a_live_call_has_no_end_time_in_the_audit_log(world: World, tmp_path):
    call = world.emu.add_call(world.account_sid, status="in-progress")
    world.emu.add_task(
        world.workspace_sid, status="assigned", channel="voice", attributes={"call_sid": call}
    )
    audit = tmp_path / "live.jsonl"
    assert world.invoke("--yes", "--audit-log", str(audit)).exit_code == 0
    (line,) = read_lines(audit)[1:-1]
    assert line["call_status"] == "in-progress"
    assert line["call_ended_at"] is None
