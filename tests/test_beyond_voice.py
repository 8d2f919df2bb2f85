"""Issue 6 end to end: conference evidence, Flex Conversations through the Interactions API,
abandoned wrap-up, and a sandbox that shows every kind."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone

from conftest import World, json_out, make_world, stuck_tasks_command

ALL = ("--channels", "voice,messaging", "--include-wrapping", "--wrapping-older-than", "30m")
MESSAGING_ATTRS = {"channelType": "chat"}


def ended_call(world: World, minutes: float = 20) -> str:
    return world.emu.add_call(
        world.account_sid, status="completed", ended_ago=timedelta(minutes=minutes)
    )


def test_every_kind_of_the_full_seed_gets_its_verdict():
    w = make_world(n_tasks=400, seed=13, kinds="all")
    try:
        seed = w.seed
        assert seed is not None
        start = datetime.now(timezone.utc)
        result = w.invoke("--yes", "--json", "--quiet", *ALL)
        assert result.exit_code == 0, result.stderr
        doc = json_out(result)
        final = {t.sid: t for t in w.emu.tasks(w.workspace_sid)}
        via_task_api = {m.task_sid for m in w.emu.mutations}
        via_interactions = {c.task_sid for f in w.emu.flex_writes for c in f.task_changes}
        expected = dict(seed.expected)
        for sid, kind in seed.kinds.items():
            if kind == "wrapping":  # a voice wrap-up of the base seed: opted in here, so by age
                call = w.emu.call(seed.call_sids[sid])
                age = start - (call.end_time or call.date_updated)
                if abs(age - timedelta(minutes=30)) < timedelta(minutes=1):
                    expected.pop(sid)  # too close to the threshold to call
                else:
                    expected[sid] = "complete-wrapping" if age > timedelta(minutes=30) else "leave"
        for sid, verdict in expected.items():
            kind, task = seed.kinds[sid], final[sid]
            if verdict == "cancel":
                assert task.status == "canceled", kind
                assert sid in via_task_api, kind
            elif verdict in {"complete", "complete-wrapping"}:
                assert task.status == "completed", kind
                assert sid in via_task_api, kind
            elif verdict == "close-interaction":
                assert task.status in {"completed", "canceled"}, kind
                assert sid in via_interactions, kind
                assert sid not in via_task_api, kind
            else:
                assert sid not in via_task_api | via_interactions, kind
        # A messaging task is never updated through the TaskRouter Task API.
        assert not any(m.is_conversation_task for m in w.emu.mutations)
        assert doc["closed"] == len(via_task_api) + len(via_interactions)
        assert doc["failed"]["total"] == doc["skipped"]["total"] == 0
        wrapups = [s for s, v in expected.items() if v == "complete-wrapping"]
        assert doc["to_close"]["abandoned_wrapup"] >= len(wrapups) > 0
    finally:
        w.emu.stop()


def test_outbound_task_with_an_ended_conference_is_completed(world: World):
    legs = {"customer": ended_call(world), "worker": ended_call(world)}
    conf = world.emu.add_conference(
        world.account_sid,
        friendly_name="x",
        status="completed",
        ended_ago=timedelta(minutes=15),
        participants=legs,
    )
    task = world.emu.add_task(
        world.workspace_sid,
        status="assigned",
        attributes={
            "outbound_to": "+15550100",
            "from": "+15550101",
            "conference": {"sid": conf, "participants": legs},
        },
    )
    result = world.invoke("--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert world.emu.task(task).status == "completed"


def test_a_call_that_ended_inside_a_live_conference_is_left(world: World):
    call = ended_call(world)
    conf = world.emu.add_conference(
        world.account_sid, friendly_name="transfer", status="in-progress"
    )
    task = world.emu.add_task(
        world.workspace_sid,
        status="assigned",
        attributes={"call_sid": call, "conference": {"sid": conf}},
    )
    result = world.invoke("--yes", "--json")
    assert json_out(result)["left"]["by_reason"] == {"conference-live": 1}
    assert world.emu.task(task).status == "assigned"


def test_the_conference_named_after_the_task_is_the_evidence_when_nothing_else_is(world: World):
    task = world.emu.add_task(
        world.workspace_sid,
        status="pending",
        attributes={"outbound_to": "+15550100", "from": "+15550101"},
    )
    lonely = world.emu.add_task(
        world.workspace_sid,
        status="pending",
        attributes={"outbound_to": "+15550102", "from": "+15550101"},
    )
    world.emu.add_conference(
        world.account_sid, friendly_name=task, status="completed", ended_ago=timedelta(minutes=12)
    )
    result = world.invoke("--yes", "--json")
    doc = json_out(result)
    assert world.emu.task(task).status == "canceled"
    assert world.emu.task(lonely).status == "pending"
    assert doc["left"]["by_reason"] == {"no-evidence": 1}


def test_channel_closed_with_the_agent_still_joined_closes_the_participant_not_the_task(
    world: World,
):
    refs = world.emu.add_interaction(
        world.account_sid,
        workspace_sid=world.workspace_sid,
        channel_status="closed",
        agent_status="joined",
    )
    result = world.invoke("--yes", "--json", "--channels", "voice,messaging")
    assert result.exit_code == 0, result.stderr
    assert world.emu.task(refs.task_sid).status == "completed"
    assert world.emu.mutations == []
    routes = [f.route for f in world.emu.flex_writes]
    assert len(routes) == 1
    assert routes == ["update_interaction_participant"]
    assert world.emu.interaction_channel(refs.interaction_sid, refs.channel_sid).status == "closed"


def test_conversation_closed_but_channel_active_closes_the_channel_with_routing(world: World):
    conversation = world.emu.add_conversation(
        world.account_sid, state="closed", closed_ago=timedelta(minutes=10)
    )
    refs = world.emu.add_interaction(
        world.account_sid,
        workspace_sid=world.workspace_sid,
        channel_status="active",
        conversation_sid=conversation,
    )
    result = world.invoke("--yes", "--json", "--channels", "voice,messaging")
    assert result.exit_code == 0, result.stderr
    assert world.emu.task(refs.task_sid).status == "completed"
    assert world.emu.mutations == []
    write = world.emu.flex_writes[0]
    assert write.form.get("Status") == "closed"
    assert '"closed"' in write.form.get("Routing", "")


def test_a_conversation_task_without_interaction_sids_is_reported_never_touched(world: World):
    conversation = world.emu.add_conversation(
        world.account_sid, state="closed", closed_ago=timedelta(hours=1)
    )
    task = world.emu.add_task(
        world.workspace_sid,
        status="assigned",
        channel="chat",
        attributes={"conversationSid": conversation},
    )
    legacy = world.emu.add_task(
        world.workspace_sid,
        status="assigned",
        channel="chat",
        attributes={"channelSid": "CH" + "1" * 32},
    )
    result = world.invoke("--yes", "--json", "--channels", "voice,messaging")
    doc = json_out(result)
    assert doc["left"]["by_reason"] == {"no-interaction": 1, "legacy-chat": 1}
    assert world.emu.task(task).status == "assigned"
    assert world.emu.task(legacy).status == "assigned"
    assert world.emu.flex_writes == []


def test_messaging_is_only_touched_when_opted_in(world: World):
    refs = world.emu.add_interaction(
        world.account_sid, workspace_sid=world.workspace_sid, channel_status="closed"
    )
    result = world.invoke("--yes", "--json")
    assert json_out(result)["left"]["by_reason"] == {"not-voice": 1}
    assert world.emu.task(refs.task_sid).status == "assigned"
    assert world.emu.flex_writes == []


def test_wrapup_cleaning_acts_only_when_opted_in_and_past_the_threshold(world: World):
    old = world.emu.add_task(
        world.workspace_sid,
        status="wrapping",
        attributes={"call_sid": ended_call(world, minutes=180)},
    )
    recent = world.emu.add_task(
        world.workspace_sid,
        status="wrapping",
        attributes={"call_sid": ended_call(world, minutes=5)},
    )
    plain = world.invoke("--yes", "--json")
    assert json_out(plain)["examined"] == 0
    assert world.emu.mutations == []
    missing = world.invoke("--yes", "--include-wrapping")
    assert missing.exit_code == 2
    assert "--wrapping-older-than" in missing.stderr
    result = world.invoke("--yes", "--json", "--include-wrapping", "--wrapping-older-than", "1h")
    doc = json_out(result)
    assert doc["to_close"]["abandoned_wrapup"] == 1
    assert world.emu.task(old).status == "completed"
    assert world.emu.task(recent).status == "wrapping"
    assert doc["left"]["by_reason"] == {"wrapping-recent": 1}


def test_the_audit_log_marks_abandoned_wrapups_with_their_own_reason(world: World, tmp_path):
    world.emu.add_task(
        world.workspace_sid,
        status="wrapping",
        attributes={"call_sid": ended_call(world, minutes=120)},
    )
    audit = tmp_path / "w.jsonl"
    assert (
        world.invoke(
            "--yes", "--include-wrapping", "--wrapping-older-than", "30m", "--audit-log", str(audit)
        ).exit_code
        == 0
    )
    assert '"reason": "wrapping-abandoned"' in audit.read_text()


def test_the_sandbox_shows_every_kind(tmp_path):
    proc = subprocess.run(
        [stuck_tasks_command(), "--sandbox", "--dry-run", *ALL],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for fragment in (
        "cancel",
        "complete",
        "close agent participant",
        "close channel",
        "abandoned wrap-ups",
        "conference still live",
        "no call or conference to check",
        "Programmable Chat",
        "conversation task without interaction SIDs",
        "conversation still active",
        "non-voice task of an unknown shape",
        "call still live",
        "call ended within the grace period",
        "attributes are not valid JSON",
    ):
        assert fragment in out, fragment
