"""Shared by the benchmark scripts: the emulator as a separate process, its state, the checks."""

from __future__ import annotations

import json
import math
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

OPEN = ("pending", "reserved", "assigned")
TERMINAL_CALLS = ("completed", "busy", "failed", "no-answer", "canceled")
GRACE_SECONDS = 120.0
PAGE_SIZE = 1000
SETUP_REQUESTS = 2  # fetch the account (the benchmark uses the auth token), fetch the workspace
# The tool asks for the conferences named after a task in this order and stops at a live one
# (the list answers in-progress ones only unless asked: Twilio's 2026-09-30 default).
NAMED_CONFERENCE_STATUSES = ("in-progress", "init", "completed")
LIVE_CONFERENCE = ("in-progress", "init")


@dataclass(frozen=True)
class EmulatorInfo:
    base_url: str
    account_sid: str
    auth_token: str
    workspace_sid: str
    pid: int
    ca_file: str | None = None  # with --tls: the throw-away CA a client must trust


CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def python_env(src: str | None, ca_file: str | None = None) -> dict[str, str]:
    """The environment for child processes; ``src`` puts another tree of the package first;
    ``ca_file`` is the emulator's CA, trusted through SSL_CERT_FILE (OpenSSL, hence aiohttp,
    which reads it at import) and REQUESTS_CA_BUNDLE (requests)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TWILIO_", "STUCK_TASKS_"))
        and k != "PYTHONPATH"
        and k not in CA_VARIABLES
    }
    if src:
        env["PYTHONPATH"] = src
    if ca_file:
        env["SSL_CERT_FILE"] = env["REQUESTS_CA_BUNDLE"] = ca_file
    return env


@contextmanager
def emulator(
    tasks: int,
    *,
    latency: float,
    concurrency_limit: int | None,
    seed: int = 1,
    stuck_share: float = 0.8,
    tls: bool = True,
    extra: Sequence[str] = (),
    src: str | None = None,
) -> Iterator[EmulatorInfo]:
    """Start ``python -m stuck_tasks.emulator`` and yield what its first line says.

    ``tls`` (the default): HTTPS with the emulator's throw-away CA (``EmulatorInfo.ca_file``),
    as Twilio serves; plain HTTP would flatter a client's CPU per request."""
    cmd = [
        sys.executable,
        "-m",
        "stuck_tasks.emulator",
        "--port",
        "0",
        "--tasks",
        str(tasks),
        "--seed",
        str(seed),
        "--stuck-share",
        str(stuck_share),
        "--latency",
        str(latency),
        *extra,
    ]
    if concurrency_limit is not None:
        cmd += ["--concurrency-limit", str(concurrency_limit)]
    if tls:
        cmd.append("--tls")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=python_env(src)
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulator did not start: {' '.join(cmd)}")
        data = json.loads(line)
        yield EmulatorInfo(
            data["base_url"],
            data["account_sid"],
            data["auth_token"],
            data["workspace_sid"],
            int(data["pid"]),
            data.get("ca_file"),
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def state(base_url: str, ca_file: str | None = None) -> dict[str, Any]:
    """``GET /__emulator/state``: tasks, calls, mutations, stats (``ca_file`` for ``--tls``)."""
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    url = f"{base_url}/__emulator/state"
    with urllib.request.urlopen(url, timeout=60, context=context) as answer:  # noqa: S310
        result: dict[str, Any] = json.loads(answer.read())
    return result


def parse_iso(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def conference_by_name(attributes: str) -> bool:
    """A voice task whose attributes name no call and no conference: the tool looks up the
    conferences TaskRouter names after the task (see :func:`named_conference_lookups`)."""
    try:
        attrs = json.loads(attributes)
    except ValueError:
        return False
    return (
        isinstance(attrs, dict)
        and attrs.get("call_sid") is None
        and attrs.get("conference") is None
    )


def named_conference_lookups(statuses: Sequence[str]) -> int:
    """List requests the tool needs for a task whose conferences by name have ``statuses``:
    one per status of NAMED_CONFERENCE_STATUSES up to the first live one found, else all three."""
    for n, status in enumerate(NAMED_CONFERENCE_STATUSES, 1):
        if status in LIVE_CONFERENCE and status in statuses:
            return n
    return len(NAMED_CONFERENCE_STATUSES)


def call_sid_of(attributes: str) -> str | None:
    try:
        attrs = json.loads(attributes)
    except ValueError:
        return None
    found = attrs.get("call_sid") if isinstance(attrs, dict) else None
    return found if isinstance(found, str) else None


@dataclass
class Job:
    """What the seeded workspace asks of a clean-up, judged from the state before the run."""

    open_tasks: int = 0
    open_voice: int = 0
    distinct_calls: int = 0
    conference_lookups: int = 0
    stuck: set[str] = field(default_factory=set)

    @property
    def list_requests(self) -> int:
        return max(1, math.ceil(self.open_tasks / PAGE_SIZE))

    @property
    def fewest_requests(self) -> int:
        """1 list request per 1,000 open tasks, 1 task fetch per open voice task, 1 call fetch
        per distinct call SID named by an open voice task, up to 3 conference lookups per open
        voice task that names no call and no conference (3 unless a live conference by that
        name is found first), 1 update per stuck task, + 2 set-up."""
        return (
            self.list_requests
            + self.open_voice
            + self.distinct_calls
            + self.conference_lookups
            + len(self.stuck)
            + SETUP_REQUESTS
        )

    def floor_seconds(self, latency: float, account_limit: int) -> float:
        return self.fewest_requests * latency / account_limit

    def taskrouter_requests(self) -> dict[str, int]:
        """The fewest requests of each TaskRouter resource key (the emulator's limit keys)."""
        return {
            "Workspace-Fetch": 1,
            "Task-List": self.list_requests,
            "Task-Fetch": self.open_voice,
            "Task-Update": len(self.stuck),
        }

    def taskrouter_floor(self, key: str, rate: float, window: float) -> float:
        """Seconds one rate-limited endpoint needs at least: what is left after the budget of
        one window (rate × window, admitted at once) goes at ``rate`` per second."""
        count = self.taskrouter_requests().get(key, 0)
        budget = math.floor(rate * window + 1e-9)  # as stuck_tasks.emulator.limits.budget
        return max(0, count - budget) / rate


def job_of(initial: dict[str, Any], now: datetime | None = None) -> Job:
    now = now or datetime.now(timezone.utc)
    calls = {c["sid"]: c for c in initial["calls"]}
    named: dict[str, list[str]] = {}
    for conference in initial.get("conferences", ()):
        named.setdefault(conference["friendly_name"], []).append(conference["status"])
    job = Job()
    call_sids: set[str] = set()
    for task in initial["tasks"]:
        if task["status"] not in OPEN:
            continue
        job.open_tasks += 1
        if task["channel"] != "voice":
            continue
        job.open_voice += 1
        sid = call_sid_of(task["attributes"])
        if sid is None:
            if conference_by_name(task["attributes"]):
                job.conference_lookups += named_conference_lookups(named.get(task["sid"], ()))
            continue
        call_sids.add(sid)
        call = calls.get(sid)
        if call is None or call["status"] not in TERMINAL_CALLS:
            continue
        ended = parse_iso(call["end_time"])
        # busy/failed/no-answer/canceled calls have no end_time; the tool then goes by the
        # call's date_updated, which the state does not expose (the seeder puts it ≥ 11 min back).
        if ended is None or (now - ended).total_seconds() >= GRACE_SECONDS:
            job.stuck.add(task["sid"])
    job.distinct_calls = len(call_sids)
    return job


@dataclass
class Verdict:
    mutations: int
    wrong: list[str]
    missed: int
    closed_stuck: int
    extra_closed: int  # correct closures of tasks whose call passed the grace during the run

    @property
    def ok(self) -> bool:
        return not self.wrong and self.missed == 0

    def text(self) -> str:
        if self.ok:
            return "PASS"
        return f"FAIL ({len(self.wrong)} wrong, {self.missed} missed)"


def check(job: Job, final: dict[str, Any], *, expect_all: bool = True) -> Verdict:
    """Zero wrong closures (judged at write time), and (``expect_all``) zero missed tasks."""
    wrong: list[str] = []
    written: dict[str, int] = {}
    for m in final["mutations"]:
        sid = m["task_sid"]
        written[sid] = written.get(sid, 0) + 1
        problems = []
        if m["before_status"] not in OPEN:
            problems.append(f"was {m['before_status']}")
        if m["channel"] != "voice":
            problems.append(f"channel {m['channel']}")
        if m["call_status_at_write"] not in TERMINAL_CALLS:
            problems.append(f"call {m['call_status_at_write']}")
        at, ended = parse_iso(m["at"]), parse_iso(m["call_end_at_write"])
        # Both instants are rendered to the second: allow the one second that truncation costs.
        if at is None or ended is None or (at - ended).total_seconds() < GRACE_SECONDS - 1:
            problems.append("call ended less than 2 minutes before")
        wanted = "completed" if m["before_status"] == "assigned" else "canceled"
        if m["after_status"] != wanted:
            problems.append(f"{m['before_status']} -> {m['after_status']}")
        if written[sid] > 1:
            problems.append("written twice")
        if problems:
            wrong.append(f"{sid}: {', '.join(problems)}")
    closed = {t["sid"] for t in final["tasks"] if t["status"] in ("completed", "canceled")} & set(
        written
    )
    closed_stuck = len(job.stuck & closed)
    missed = len(job.stuck) - closed_stuck if expect_all else 0
    return Verdict(len(final["mutations"]), wrong, missed, closed_stuck, len(closed - job.stuck))


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (``/proc/PID/stat``), 0.0 if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15)


@dataclass(frozen=True)
class MachineCpu:
    """Cumulative CPU seconds of the whole machine (``/proc/stat``), summed over its cores."""

    busy: float  # user, nice, system, irq, softirq
    steal: float  # taken by the hypervisor for other guests
    at: float  # time.monotonic()

    @classmethod
    def now(cls) -> MachineCpu:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                ticks = [int(x) for x in stat.readline().split()[1:9]]
        except (OSError, ValueError):
            ticks = [0] * 8
        user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
        busy = (user + nice + system + irq + softirq) / _TICK
        return cls(busy, steal / _TICK, time.monotonic())


def busy_cores(seconds: float = 3.0) -> float:
    """Cores kept busy over the next ``seconds`` by everything on the machine."""
    start = MachineCpu.now()
    time.sleep(seconds)
    end = MachineCpu.now()
    return (end.busy - start.busy) / max(1e-9, end.at - start.at)


def load() -> str:
    """The ``uptime`` line (load averages over 1, 5 and 15 minutes)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
