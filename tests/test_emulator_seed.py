"""The outage seeder, the sandbox world and the standalone emulator process."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator_client import TASKROUTER, EmulatorSession, emulator_client
from stuck_tasks.emulator import (
    EXTRA_KINDS,
    KIND_VERDICTS,
    VOICE_KINDS,
    Emulator,
    SandboxWorld,
    SeedReport,
    SidSource,
    sandbox_world,
    seed_outage,
)

SRC = Path(__file__).resolve().parent.parent / "src"
NOW = datetime(2026, 11, 28, 20, 0, tzinfo=timezone.utc)


def seeded(n_tasks: int = 300, seed: int = 0, **kwargs: Any) -> tuple[Emulator, SeedReport]:
    emu = Emulator(clock=lambda: NOW)
    acct = emu.add_account()
    ws = emu.add_workspace(acct.sid)
    return emu, seed_outage(emu, acct.sid, ws.sid, n_tasks=n_tasks, seed=seed, **kwargs)


def test_every_kind_is_present_and_most_tasks_are_stuck() -> None:
    emu, report = seeded(300)
    counts = report.counts()
    assert set(counts) == set(VOICE_KINDS)
    assert sum(counts.values()) == 300
    stuck = counts["stuck_pending"] + counts["stuck_reserved"] + counts["stuck_assigned"]
    assert stuck == 240
    verdicts = Counter(report.expected.values())
    assert verdicts["cancel"] + verdicts["complete"] == 240
    assert verdicts["leave"] > 0
    assert verdicts["not-open"] > 0
    assert len(emu.tasks()) == 300


def test_stuck_share_is_a_parameter() -> None:
    _, report = seeded(200, stuck_share=0.5)
    assert (
        Counter(report.expected.values())["cancel"] + Counter(report.expected.values())["complete"]
        == 100
    )


def test_first_task_is_chat_and_non_voice_tasks_are_spread_out() -> None:
    emu, report = seeded(300)
    tasks = emu.tasks()
    assert tasks[0].channel == "chat"
    assert report.kinds[tasks[0].sid] == "chat"
    non_voice = [i for i, t in enumerate(tasks) if t.channel != "voice"]
    assert non_voice[-1] > 150
    ages = [t.date_created for t in tasks]
    assert ages == sorted(ages)
    assert NOW - ages[0] >= timedelta(hours=3)
    assert NOW - ages[-1] >= timedelta(minutes=10)


def test_each_kind_has_the_state_its_verdict_needs() -> None:
    emu, report = seeded(600)
    for sid, kind in report.kinds.items():
        task = emu.task(sid)
        call_sid = report.call_sids[sid]
        if kind.startswith("stuck_"):
            assert task.status == kind.removeprefix("stuck_")
            call = emu.call(call_sid)  # type: ignore[arg-type]
            assert call.status in {"completed", "busy", "failed", "no-answer", "canceled"}
            assert NOW - call.date_updated > timedelta(minutes=10)
            assert (call.end_time is None) == (call.status != "completed")
        elif kind == "live_call":
            assert emu.call(call_sid).status in {"queued", "ringing", "in-progress"}  # type: ignore[arg-type]
        elif kind == "recent_call_end":
            assert NOW - emu.call(call_sid).end_time == timedelta(seconds=30)  # type: ignore[arg-type,operator]
        elif kind == "invalid_json":
            try:
                json.loads(task.attributes)
            except ValueError:
                pass
            else:
                raise AssertionError("attributes should not parse")
        elif kind in ("chat", "sms"):
            assert task.channel == kind
        elif kind == "default_channel":
            assert task.channel == "default"
        elif KIND_VERDICTS[kind] == "not-open":
            assert task.status == kind
        if KIND_VERDICTS[kind] in ("cancel", "complete", "leave"):
            assert task.status in {"pending", "reserved", "assigned"}
    call_statuses = {
        emu.call(report.call_sids[s]).status  # type: ignore[arg-type]
        for s, k in report.kinds.items()
        if k == "stuck_pending"
    }
    assert "canceled" in call_statuses


def test_seeding_is_deterministic_in_kinds() -> None:
    _, first = seeded(100, seed=3)
    _, second = seeded(100, seed=3)
    assert list(first.kinds.values()) == list(second.kinds.values())


def test_20000_tasks_seed() -> None:
    emu, report = seeded(20_000, seed=1)
    assert len(report.kinds) == 20_000
    assert len(emu.tasks()) == 20_000


def test_sandbox_world_lists_in_pages_of_100() -> None:
    emu, world = sandbox_world(n_tasks=300, seed=0)
    assert world.auth_token not in repr(world)
    assert set(world.report.counts()) == set(KIND_VERDICTS)
    with emu:
        client = emulator_client(
            emu.base_url, world.account_sid, world.auth_token, world.account_sid
        )
        tasks = client.taskrouter.v1.workspaces(world.workspace_sid).tasks.list(page_size=1000)
        assert len(tasks) == 300
    pages = [r for r in emu.request_log if r.path.endswith("/Tasks")]
    assert len(pages) == 3
    assert client.taskrouter is not None


SID = re.compile(r"\b[A-Z]{2}[0-9a-f]{32}\b")


def minted_sids(emu: Emulator, world: SandboxWorld) -> list[str]:
    """Every SID the sandbox holds, in a stable order: the admin state (tasks and the call,
    conference, interaction and conversation SIDs in their attributes, channels, participants,
    queues, workflows), then the workspace with its activities and the account."""
    state = emu.state_json()
    del state["stats"]
    twilio = "https://taskrouter.twilio.com"
    workspace = emu.api_fetch_workspace(world.account_sid, world.workspace_sid, twilio)
    text = json.dumps([state, workspace, world.account_sid])
    return SID.findall(text)


def test_fixed_sids_make_the_same_sandbox_twice() -> None:
    (emu, world), (again, twin) = (sandbox_world(60, seed=7, fixed_sids=True) for _ in range(2))
    sids = minted_sids(emu, world)
    prefixes = {sid[:2] for sid in sids}
    assert prefixes >= {"AC", "WS", "WA", "WT", "CA", "CF", "KD", "UO", "UT", "CH", "WQ", "WW"}
    assert sids == minted_sids(again, twin)
    assert (world.account_sid, world.workspace_sid) == (twin.account_sid, twin.workspace_sid)
    assert world.report == twin.report  # kinds, verdicts, task/call pairs, conferences, Flex
    assert world.auth_token != twin.auth_token  # secrets stay random
    key, twin_key = (e.add_api_key(w.account_sid) for e, w in ((emu, world), (again, twin)))
    assert key.sid == twin_key.sid
    assert key.secret != twin_key.secret
    # Timestamps follow each world's clock: the same ages.
    for t, u in zip(emu.tasks(), again.tasks(), strict=True):
        assert abs((emu.now() - t.date_created) - (again.now() - u.date_created)) < timedelta(
            seconds=5
        )


def test_another_seed_or_no_fixed_sids_gives_other_sids() -> None:
    fixed = set(minted_sids(*sandbox_world(60, seed=7, fixed_sids=True)))
    other_seed = set(minted_sids(*sandbox_world(60, seed=8, fixed_sids=True)))
    assert fixed.isdisjoint(other_seed)
    (emu, world), (again, twin) = (sandbox_world(60, seed=7) for _ in range(2))
    first, second = set(minted_sids(emu, world)), set(minted_sids(again, twin))
    # Only the seeder's made-up SIDs repeat (the missing call, conversations no resource
    # backs): they come from the data seed, not from the world.
    shared = first & second
    assert {sid[:2] for sid in shared} <= {"CA", "CH"}
    for sid in shared:
        with pytest.raises(KeyError):
            emu.call(sid) if sid.startswith("CA") else emu.conversation(sid)
    assert world.account_sid != twin.account_sid
    assert (first - shared).isdisjoint(fixed)


def test_a_sid_source_mints_twilio_shaped_sids() -> None:
    seeded, same, fresh = SidSource(3), SidSource(3), SidSource()
    minted = [seeded("WT") for _ in range(100)]
    assert minted == [same("WT") for _ in range(100)]
    assert all(re.fullmatch(r"WT[0-9a-f]{32}", sid) for sid in [*minted, fresh("WT")])
    assert len(set(minted)) == 100
    assert fresh("CA") != SidSource()("CA")
    assert repr(seeded) == "SidSource(3)"
    for bad in ("3", True, 1.5):
        with pytest.raises(TypeError):
            SidSource(bad)  # type: ignore[arg-type]
    # A World built on a source takes every SID from it.
    world, twin = (Emulator(sids=SidSource(9)) for _ in range(2))
    made = [
        (acct.sid, ws.sid, ws.default_activity_sid, w.add_task(ws.sid), w.add_call(acct.sid))
        for w in (world, twin)
        for acct in [w.add_account()]
        for ws in [w.add_workspace(acct.sid)]
    ]
    assert made[0] == made[1]


@contextlib.contextmanager
def standalone(*args: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """``python -m stuck_tasks.emulator`` with ``args``; yields the process and its JSON line."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "stuck_tasks.emulator", "--port", "0", *args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True) as proc:
        try:
            assert proc.stdout is not None
            yield proc, json.loads(proc.stdout.readline())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_standalone_process_serves_until_sigterm() -> None:
    with standalone("--tasks", "50", "--seed", "1") as (proc, info):
        assert set(info) == {
            "base_url",
            "account_sid",
            "auth_token",
            "api_key",
            "api_secret",
            "region",
            "workspace_sid",
            "pid",
        }
        assert info["pid"] == proc.pid
        assert (info["api_key"], info["api_secret"], info["region"]) == (None, None, "us1")
        session = EmulatorSession(info["base_url"], (info["account_sid"], info["auth_token"]))
        tasks_url = f"{TASKROUTER}/v1/Workspaces/{info['workspace_sid']}/Tasks"
        resp = session.get(tasks_url, params={"PageSize": 100})
        assert resp.status_code == 200
        assert len(resp.json()["tasks"]) == 50
        # The loopback address names no Twilio host.
        loopback = session.get(tasks_url, headers={"Host": info["base_url"].split("//")[1]})
        assert (loopback.status_code, loopback.json()["code"]) == (404, 20404)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_standalone_flags_set_the_new_knobs_and_make_a_key() -> None:
    read = "/twilio/taskrouter/workspaces/tasks/read"
    args = ("--tasks", "5", "--key-kind", "restricted", "--permissions", read)
    args += ("--clock-offset", "-3600", "--list-attributes", "--revoke-after", "3")
    with standalone(*args) as (_, info):
        assert info["api_key"].startswith("SK")
        session = EmulatorSession(info["base_url"], (info["api_key"], info["api_secret"]))
        tasks_url = f"{TASKROUTER}/v1/Workspaces/{info['workspace_sid']}/Tasks"
        listed = session.get(tasks_url)
        assert listed.status_code == 200
        assert all(t["attributes"] is not None for t in listed.json()["tasks"])
        date = parsedate_to_datetime(listed.headers["Date"])
        assert timedelta(minutes=59) < datetime.now(timezone.utc) - date < timedelta(minutes=61)
        workspace = session.get(f"{TASKROUTER}/v1/Workspaces/{info['workspace_sid']}")
        assert (workspace.status_code, workspace.json()["code"]) == (403, 70051)
        session.get(tasks_url)
        assert session.get(tasks_url).json()["code"] == 20003  # the 4th request: revoked
        state = requests.get(f"{info['base_url']}/__emulator/state", timeout=10).json()
        assert state["faults"]["closed_channel_close"] == "refuse"
        assert state["faults"]["revoke_after"] == 3


def test_standalone_fixed_sids_repeat_across_starts() -> None:
    seen = []
    for _ in range(2):
        with standalone("--tasks", "5", "--seed", "4", "--fixed-sids") as (proc, info):
            session = EmulatorSession(info["base_url"], (info["account_sid"], info["auth_token"]))
            tasks_url = f"{TASKROUTER}/v1/Workspaces/{info['workspace_sid']}/Tasks"
            sids = [t["sid"] for t in session.get(tasks_url).json()["tasks"]]
            seen.append((info["account_sid"], info["workspace_sid"], sids, info["auth_token"]))
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
    assert seen[0][:3] == seen[1][:3]
    assert len(seen[0][2]) == 5
    assert seen[0][3] != seen[1][3]


def test_standalone_refuses_permissions_without_a_restricted_key() -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [sys.executable, "-m", "stuck_tasks.emulator", "--key-kind", "main"]
    cmd += ["--permissions", "/twilio/voice/calls/read"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "--permissions needs --key-kind restricted" in done.stderr


# ---------------------------------------------------------------- kinds="voice" stays as it was


def fingerprint(emu: Emulator, report: SeedReport) -> str:
    """Kinds, statuses, channels, queues, ages and attributes in list order.

    Call SIDs come from uuid4 and are masked, except the RNG-made ones of missing_call tasks.
    """
    rows = []
    for t in emu.tasks():
        kind = report.kinds[t.sid]
        attrs = t.attributes
        if kind != "missing_call":
            attrs = re.sub(r"CA[0-9a-f]{32}", "CA*", attrs)
        rows.append(
            [kind, t.status, t.channel, t.queue, attrs, (NOW - t.date_created).total_seconds()]
        )
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


# Captured from the seeder before conference/Flex kinds were added.
VOICE_FINGERPRINTS = [
    ((300, 0, 0.8), "c9913de3ceb5f19ec6109bd59aeabd0f0b884c45c11b9a9dea9d3e952202ec4b"),
    ((100, 3, 0.8), "1fce624f450565285af57644ba04cb4343734d269f671b344b464f807d113249"),
    ((1000, 5, 0.8), "d1c3efe7d522a2405b855850214940a06f54c05bf5ea3346442baed01e74b658"),
    ((200, 1, 0.5), "52825c0fd02b43074579f4bb9e44e5dac4a86fa53bce00b32e156afafb38cc50"),
]


@pytest.mark.parametrize(("args", "digest"), VOICE_FINGERPRINTS)
def test_default_voice_seeding_is_byte_for_byte_unchanged(
    args: tuple[int, int, float], digest: str
) -> None:
    n_tasks, seed, share = args
    emu, report = seeded(n_tasks, seed=seed, stuck_share=share)
    assert fingerprint(emu, report) == digest
    _, explicit = seeded(n_tasks, seed=seed, stuck_share=share, kinds="voice")
    assert list(explicit.kinds.values()) == list(report.kinds.values())


def test_default_voice_seeding_counts_are_unchanged() -> None:
    emu, report = seeded(300, seed=0)
    assert Counter(report.expected.values()) == {
        "cancel": 120,
        "complete": 120,
        "leave": 48,
        "not-open": 12,
    }
    assert report.counts() == {
        "stuck_assigned": 120,
        "stuck_pending": 84,
        "stuck_reserved": 36,
        "chat": 5,
        "live_call": 5,
        "missing_call": 5,
        "recent_call_end": 5,
        "call_sid_not_string": 4,
        "canceled": 4,
        "completed": 4,
        "default_channel": 4,
        "invalid_json": 4,
        "json_list": 4,
        "json_number": 4,
        "no_call_sid": 4,
        "sms": 4,
        "wrapping": 4,
    }
    first = emu.tasks()[:4]
    assert json.loads(first[0].attributes) == {
        "conversationSid": "CHdfa7c6ed32d1f81ba636425c9bbd750d",
        "channelType": "chat",
        "customerName": "Web visitor",
        "direction": "inbound",
    }
    assert [report.kinds[t.sid] for t in first] == [
        "chat",
        "stuck_reserved",
        "stuck_pending",
        "stuck_pending",
    ]
    assert report.conference_sids == {}
    assert report.interactions == {}


# ---------------------------------------------------------------- kinds="all"

VERDICTS = {"cancel", "complete", "leave", "not-open", "close-interaction", "complete-wrapping"}


def test_all_kinds_add_a_small_share_of_every_extra_kind() -> None:
    emu, report = seeded(300, kinds="all")
    counts = report.counts()
    assert set(counts) == set(KIND_VERDICTS)
    assert sum(counts.values()) == len(emu.tasks()) == 300
    assert sum(counts[k] for k in EXTRA_KINDS) == 30
    assert all(counts[k] >= 2 for k in EXTRA_KINDS)
    assert set(report.expected.values()) == VERDICTS
    assert set(KIND_VERDICTS.values()) == VERDICTS
    small = seeded(40, kinds="all")[1].counts()
    assert sum(small.values()) == 40
    assert all(small[k] == 1 for k in EXTRA_KINDS)
    with pytest.raises(ValueError, match="kinds"):
        seeded(10, kinds="flex")


def test_extra_tasks_are_dated_between_the_voice_tasks() -> None:
    emu, report = seeded(300, kinds="all")
    tasks = emu.tasks()
    assert report.kinds[tasks[0].sid] == "chat"
    positions = [i for i, t in enumerate(tasks) if report.kinds[t.sid] in EXTRA_KINDS]
    assert positions[0] < 30
    assert positions[-1] > 250
    assert NOW - tasks[-1].date_created >= timedelta(minutes=15)


def test_all_kinds_seeding_is_deterministic() -> None:
    first_emu, first = seeded(200, seed=4, kinds="all")
    second_emu, second = seeded(200, seed=4, kinds="all")
    assert fingerprint(first_emu, first) != ""
    assert [first.kinds[t.sid] for t in first_emu.tasks()] == [
        second.kinds[t.sid] for t in second_emu.tasks()
    ]
    assert list(first.expected.values()) == list(second.expected.values())


def conference_of(emu: Emulator, attrs: dict[str, Any]) -> Any:
    return emu.conference(attrs["conference"]["sid"])


def test_each_extra_kind_has_the_state_its_verdict_needs() -> None:
    emu, report = seeded(600, seed=2, kinds="all")
    seen: Counter[str] = Counter()
    for sid, kind in report.kinds.items():
        if kind not in EXTRA_KINDS:
            continue
        seen[kind] += 1
        task = emu.task(sid)
        attrs = json.loads(task.attributes)
        verdict = report.expected[sid]
        if kind.startswith("outbound_conference_"):
            assert task.status == "assigned"
            assert attrs["direction"] == "outbound"
            assert set(attrs) == {"outbound_to", "from", "direction", "conference"}
            conference = conference_of(emu, attrs)
            calls = [emu.call(c) for c in attrs["conference"]["participants"].values()]
            assert set(attrs["conference"]["participants"]) == {"customer", "worker"}
            assert report.conference_sids[sid] == conference.sid
            if kind.endswith("_ended"):
                assert conference.status == "completed"
                assert NOW - conference.date_updated == timedelta(minutes=20)
                assert {c.status for c in calls} == {"completed"}
                assert verdict == "complete"
            else:
                assert conference.status == "in-progress"
                assert {c.status for c in calls} == {"in-progress"}
                assert verdict == "leave"
        elif kind == "conference_by_name_ended":
            assert "call_sid" not in attrs
            assert "conference" not in attrs
            conference = emu.conference(report.conference_sids[sid])
            assert (conference.friendly_name, conference.status) == (sid, "completed")
            assert verdict == ("complete" if task.status == "assigned" else "cancel")
            assert task.status in {"pending", "reserved", "assigned"}
        elif kind == "call_ended_conference_live":
            assert emu.call(attrs["call_sid"]).status == "completed"
            assert NOW - emu.call(attrs["call_sid"]).date_updated > timedelta(minutes=10)
            assert conference_of(emu, attrs).status == "in-progress"
            assert verdict == "leave"
        elif kind == "no_call_no_conference":
            assert set(attrs) == {"outbound_to", "from"}
            assert task.status in {"pending", "reserved", "assigned"}
        elif kind == "participants_all_ended":
            assert set(attrs["conference"]) == {"participants"}
            calls = [emu.call(c) for c in attrs["conference"]["participants"].values()]
            assert all(
                c.status in {"completed", "busy", "failed", "no-answer", "canceled"} for c in calls
            )
            assert all(NOW - c.date_updated > timedelta(minutes=10) for c in calls)
            assert verdict == ("complete" if task.status == "assigned" else "cancel")
        elif kind.startswith("messaging_"):
            refs = report.interactions[sid]
            assert task.channel in {"chat", "sms"}
            assert attrs == {
                "flexInteractionSid": refs.interaction_sid,
                "flexInteractionChannelSid": refs.channel_sid,
                "conversationSid": refs.conversation_sid,
                "channelType": task.channel,
            }
            channel = emu.interaction_channel(refs.interaction_sid, refs.channel_sid)
            conversation = emu.conversation(refs.conversation_sid)  # type: ignore[arg-type]
            agents = [p for p in channel.participants if p.type == "agent"]
            if task.status == "assigned":
                assert [(p.status, p.task_sid) for p in agents] == [("joined", sid)]
            else:
                assert agents == []
            expected_states = {
                "messaging_channel_closed": ("closed", "closed", "close-interaction"),
                "messaging_conversation_closed": ("active", "closed", "close-interaction"),
                "messaging_active": ("active", "active", "leave"),
            }[kind]
            assert (channel.status, conversation.state, verdict) == expected_states
        elif kind == "conversation_task_without_interaction":
            assert set(attrs) == {"conversationSid", "channelType"}
            assert emu.conversation(attrs["conversationSid"]).state in {"active", "closed"}
            assert (task.channel, verdict) == ("chat", "leave")
        elif kind == "legacy_chat":
            assert set(attrs) == {"channelSid"}
            assert attrs["channelSid"].startswith("CH")
            assert (task.channel, verdict) == ("chat", "leave")
        else:
            call = emu.call(attrs["call_sid"])
            ended = timedelta(hours=3) if kind == "abandoned_wrapping" else timedelta(minutes=5)
            assert task.status == "wrapping"
            assert NOW - call.end_time == ended  # type: ignore[operator]
            assert NOW - task.date_created > ended
        if verdict in ("cancel", "complete", "leave", "close-interaction"):
            assert task.status in {"pending", "reserved", "assigned"}
    assert set(seen) == set(EXTRA_KINDS)
    statuses = {
        (report.kinds[s], emu.task(s).status)
        for s in report.kinds
        if report.kinds[s] in ("conference_by_name_ended", "messaging_conversation_closed")
    }
    assert ("conference_by_name_ended", "pending") in statuses
    assert ("messaging_conversation_closed", "reserved") in statuses


def test_the_standalone_process_can_seed_all_kinds() -> None:
    from stuck_tasks.emulator.__main__ import _parser

    assert _parser().parse_args([]).kinds == "voice"
    assert _parser().parse_args(["--kinds", "all"]).kinds == "all"
