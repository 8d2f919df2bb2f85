"""Issue 3/4: Ctrl-C mid-apply exits 130 with a true summary and a valid partial log; a re-run finishes."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from conftest import make_world, stuck_tasks_command
from stuck_tasks.emulator import Faults


def start(w, audit, *, concurrency: int) -> subprocess.Popen[str]:
    """The installed command, unattended, as a person would start it from a shell."""
    return subprocess.Popen(
        [
            stuck_tasks_command(),
            "--yes",
            "--json",
            "--concurrency",
            str(concurrency),
            "--audit-log",
            str(audit),
        ],
        env=w.process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_sigint_mid_apply_settles_reports_truly_and_a_rerun_finishes(tmp_path):
    w = make_world(Faults(latency=0.05), n_tasks=240, seed=9)
    try:
        env = w.process_env()
        audit = tmp_path / "run1.jsonl"
        proc = start(w, audit, concurrency=4)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(w.emu.mutations) < 5:
            time.sleep(0.02)
        assert len(w.emu.mutations) >= 5, "the run never started writing"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        doc = json.loads(stdout)
        assert doc["status"] == "interrupted"
        mutated = {m.task_sid for m in w.emu.mutations}
        assert doc["closed"] == len(mutated)
        expected = set(w.seed.with_verdict("cancel")) | set(w.seed.with_verdict("complete"))
        assert mutated < expected  # stopped early, and nothing wrong was closed
        # The partial audit log is valid: every line parses; what it calls closed is what changed.
        lines = [json.loads(line) for line in audit.read_text().splitlines()]
        assert lines[0]["type"] == "header"
        assert lines[-1]["type"] == "footer"
        closed = {line["task_sid"] for line in lines if line.get("outcome") == "closed"}
        assert closed == mutated
        # A re-run just finishes the job.
        rerun = subprocess.run(
            [stuck_tasks_command(), "--yes", "--json", "--quiet"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        assert rerun.returncode == 0, rerun.stderr
        assert {m.task_sid for m in w.emu.mutations} == expected
        assert json.loads(rerun.stdout)["closed"] == len(expected - mutated)
    finally:
        w.emu.stop()


def test_second_ctrl_c_aborts_at_once_and_names_updates_in_flight(tmp_path):
    w = make_world(Faults(latency=0.4), n_tasks=120, seed=4)
    try:
        audit = tmp_path / "abort.jsonl"
        proc = start(w, audit, concurrency=8)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            r.method == "POST" for r in w.emu.request_log
        ):
            time.sleep(0.01)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130, stderr
        doc = json.loads(stdout)
        assert doc["status"] == "interrupted"
        assert doc["updates_in_flight"], "a POST was in flight (0.4 s latency) when we aborted"
        for line in audit.read_text().splitlines():
            json.loads(line)
    finally:
        w.emu.stop()
