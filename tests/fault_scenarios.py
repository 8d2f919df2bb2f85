"""The fault matrix: every emulator knob alone, then combined, over a workspace of several pages.

Used by tests/test_fault_matrix.py (the proof) and bench/fault_matrix.py (the table).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from click.testing import CliRunner

from stuck_tasks.cli import cli
from stuck_tasks.emulator import Emulator, Faults, seed_outage

GRACE = timedelta(minutes=2)
TERMINAL = {"completed", "busy", "failed", "no-answer", "canceled"}
OPEN = {"pending", "reserved", "assigned"}
BASE = Faults(max_page_size=40, seed=11)

SCENARIOS: dict[str, Faults] = {
    "baseline": BASE,
    "429 by concurrency": replace(BASE, concurrency_limit=4),
    "429 by rate": replace(BASE, rps_limit=150.0),
    "429 with Retry-After": replace(BASE, concurrency_limit=4, retry_after=0.2),
    "500/503 answers": replace(BASE, error_rate=0.2),
    "drop before write": replace(BASE, drop_before_write_rate=0.3),
    "drop after write": replace(BASE, drop_after_write_rate=0.3),
    "500 after write": replace(BASE, error_after_write_rate=0.3),
    "latency jitter and spikes": replace(
        BASE, latency=0.005, latency_jitter=0.02, spike_rate=0.05, spike_latency=1.5
    ),
    "platform events": replace(BASE, platform_event_rate=0.08),
    "everything at once": replace(
        BASE,
        concurrency_limit=6,
        rps_limit=300.0,
        error_rate=0.1,
        drop_before_write_rate=0.1,
        drop_after_write_rate=0.1,
        error_after_write_rate=0.1,
        latency=0.003,
        latency_jitter=0.01,
        spike_rate=0.03,
        spike_latency=1.5,
        platform_event_rate=0.05,
    ),
}

# --timeout 1 makes latency spikes (1.5 s) real timeouts, so they exercise the retry path.
ARGS = (
    "--yes",
    "--json",
    "--quiet",
    "--concurrency",
    "12",
    "--timeout",
    "1",
    "--max-changes",
    "100000",
)


@dataclass
class Row:
    scenario: str
    stuck: int
    closed: int
    wrongly_closed: list[str]
    left_stuck: list[str]
    retries: int
    throttled: int
    wall: float
    summary_matches: bool
    exit_code: int
    problems: list[str]


def stuck_now(emu: Emulator, workspace_sid: str, *, ended_before: Any) -> set[str]:
    """Open voice tasks whose call is terminal and ended before ``ended_before``."""
    found = set()
    for task in emu.tasks(workspace_sid):
        if task.status not in OPEN or task.channel != "voice":
            continue
        try:
            attributes = json.loads(task.attributes)
        except ValueError:
            continue
        sid = attributes.get("call_sid") if isinstance(attributes, dict) else None
        if not isinstance(sid, str):
            continue
        try:
            call = emu.call(sid)
        except KeyError:
            continue
        ended = call.end_time or call.date_updated
        if call.status in TERMINAL and ended is not None and ended <= ended_before:
            found.add(task.sid)
    return found


def wrong_closures(emu: Emulator) -> list[str]:
    """Every API write that closed a task without proof, or with the wrong status."""
    wrong = []
    for m in emu.mutations:
        due = "completed" if m.before_status == "assigned" else "canceled"
        ok = (
            m.before_status in OPEN
            and m.channel == "voice"
            and m.after_status == due
            and m.call_status_at_write in TERMINAL
            and m.call_end_at_write is not None
            and m.at - m.call_end_at_write >= GRACE
        )
        if not ok:
            wrong.append(m.task_sid)
    return wrong


def run_scenario(name: str, faults: Faults, *, n_tasks: int = 160, seed: int = 5) -> Row:
    emu = Emulator(faults)
    account = emu.add_account(friendly_name="Matrix")
    workspace = emu.add_workspace(account.sid, friendly_name="Matrix WS")
    seed_outage(emu, account.sid, workspace.sid, n_tasks=n_tasks, seed=seed)
    emu.start()
    env = {
        "TWILIO_ACCOUNT_SID": account.sid,
        "TWILIO_AUTH_TOKEN": account.auth_token,
        "TWILIO_WORKSPACE_SID": workspace.sid,
        "STUCK_TASKS_BASE_URL": emu.base_url,
    }
    try:
        start = datetime.now(timezone.utc)
        stuck_before = stuck_now(emu, workspace.sid, ended_before=start - GRACE)
        t0 = time.perf_counter()
        result = CliRunner().invoke(cli, list(ARGS), env=env, catch_exceptions=False)
        wall = time.perf_counter() - t0
        problems: list[str] = []
        try:
            doc = json.loads(result.stdout)
        except ValueError:
            doc = {}
            problems.append(f"no JSON: {result.stderr[-300:]}")
        mutations = emu.mutations
        closed_sids = {m.task_sid for m in mutations}
        summary_matches = bool(doc) and doc["closed"] == len(mutations) == len(closed_sids)
        if doc and (result.exit_code == 3) != bool(doc["failed"]["total"]):
            problems.append(f"exit {result.exit_code} with failed {doc['failed']}")
        # Faults are transient: a second run without them closes what is left.
        emu.set_faults(Faults(max_page_size=faults.max_page_size))
        second = CliRunner().invoke(cli, list(ARGS), env=env, catch_exceptions=False)
        if second.exit_code != 0:
            problems.append(f"second run exit {second.exit_code}: {second.stderr[-300:]}")
        left = stuck_now(emu, workspace.sid, ended_before=start - GRACE)
        return Row(
            scenario=name,
            stuck=len(stuck_before),
            closed=len(closed_sids),
            wrongly_closed=wrong_closures(emu),
            left_stuck=sorted(left),
            retries=doc.get("api", {}).get("retries", -1) if doc else -1,
            throttled=doc.get("api", {}).get("throttled_429", -1) if doc else -1,
            wall=wall,
            summary_matches=summary_matches,
            exit_code=result.exit_code,
            problems=problems,
        )
    finally:
        emu.stop()
