"""The outage seeder, the sandbox world and the standalone emulator process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

from emulator_client import emulator_client
from stuck_tasks.emulator import KIND_VERDICTS, Emulator, SeedReport, sandbox_world, seed_outage

SRC = Path(__file__).resolve().parent.parent / "src"
NOW = datetime(2026, 11, 28, 20, 0, tzinfo=timezone.utc)


def seeded(n_tasks: int = 300, seed: int = 0, **kwargs: float) -> tuple[Emulator, SeedReport]:
    emu = Emulator(clock=lambda: NOW)
    acct = emu.add_account()
    ws = emu.add_workspace(acct.sid)
    return emu, seed_outage(emu, acct.sid, ws.sid, n_tasks=n_tasks, seed=seed, **kwargs)


def test_every_kind_is_present_and_most_tasks_are_stuck() -> None:
    emu, report = seeded(300)
    counts = report.counts()
    assert set(counts) == set(KIND_VERDICTS)
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
    with emu:
        client = emulator_client(
            emu.base_url, world.account_sid, world.auth_token, world.account_sid
        )
        tasks = client.taskrouter.v1.workspaces(world.workspace_sid).tasks.list(page_size=1000)
        assert len(tasks) == 300
    pages = [r for r in emu.request_log if r.path.endswith("/Tasks")]
    assert len(pages) == 3
    assert client.taskrouter is not None


def test_standalone_process_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cmd = [
        sys.executable,
        "-m",
        "stuck_tasks.emulator",
        "--port",
        "0",
        "--tasks",
        "50",
        "--seed",
        "1",
    ]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True) as proc:
        try:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            assert set(info) == {"base_url", "account_sid", "auth_token", "workspace_sid", "pid"}
            assert info["pid"] == proc.pid
            resp = requests.get(
                f"{info['base_url']}/v1/Workspaces/{info['workspace_sid']}/Tasks",
                auth=(info["account_sid"], info["auth_token"]),
                params={"PageSize": 100},
                timeout=10,
            )
            assert resp.status_code == 200
            assert len(resp.json()["tasks"]) == 50
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
