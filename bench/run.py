"""The benchmark: stuck-tasks against an emulated Twilio over HTTPS, 80 ms latency, account limits.

python bench/run.py                      # the full benchmark (about 45 minutes on 2 cores)
python bench/run.py --quick              # 1,000 tasks, one run each, a short baseline (~2 min)
python bench/run.py --sizes 1000,5000 --repeat 1 --scenarios rate-limited

Rows: for each size (1,000 / 5,000 / 20,000 tasks, ``--stuck-share 0.8``) and concurrency
(100, the default 25, 200) against an account limit of 100 concurrent requests; then the
scenarios: "rate-limited 2,000" (TaskRouter limits Task-List 5/s, Task-Fetch 50/s,
Task-Update 25/s over 10 s; the default concurrency) and "the storm" (an account limited to 10
concurrent requests and 40 a second; ``--concurrency 64``), both 2,000 stuck voice tasks.

Every run gets a fresh emulator process serving HTTPS with its throw-away CA (the tool trusts
it through SSL_CERT_FILE), runs the installed ``stuck-tasks --yes --json --quiet --max-changes
1000000`` once inside a fresh ``bench/_one.py`` wrapper (wall time, CPU, peak RSS), and checks
the emulator's final state: zero wrong closures, zero missed stuck tasks. A run during which
other work used the machine's CPU is discarded and re-run once the machine is quiet. Then the
sequential twilio-library loop (bench/baseline.py), the transport CPU comparison
(bench/transport.py), the ceiling (bench/transport.py again: a loop that only fetches tasks, at
the big rows' 100 in flight and 80 ms, three runs) and the start-up time of ``stuck-tasks
--help``. The tables go to stdout and, with the machine details, to RESULTS.md.

bench/mix.py, run on its own, compares the tool with its own requests made without it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _emu  # noqa: E402
import baseline  # noqa: E402
import transport  # noqa: E402

LATENCY = 0.08
ACCOUNT_LIMIT = 100
WINDOW = 10.0
KINDS = ("list_tasks", "fetch_task", "fetch_call", "list_conferences", "update_task")
SETUP_KINDS = ("fetch_account", "fetch_workspace", "list_workspaces")
# A run is skewed when work outside the benchmark kept more than this share of a core busy.
SKEWED_CORES = 0.15
QUIET_CORES = 0.15  # the machine counts as quiet below this many busy cores (3 s sample)


def _num(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Row:
    """One configuration: the seeded job, what the emulator enforces, what the tool is asked."""

    name: str
    tasks: int
    concurrency: str  # a --concurrency value, or "default" (no flag: 25)
    stuck_share: float = 0.8
    account_limit: int | None = ACCOUNT_LIMIT
    rps_limit: float | None = None
    taskrouter_limits: tuple[tuple[str, float], ...] = ()
    window: float = WINDOW

    @property
    def concurrency_text(self) -> str:
        return "25 (default)" if self.concurrency == "default" else self.concurrency

    def emulator_extra(self) -> list[str]:
        """The emulator's limit options beyond --concurrency-limit."""
        args = []
        if self.rps_limit is not None:
            args += ["--rps-limit", _num(self.rps_limit)]
        for key, rate in self.taskrouter_limits:
            args += ["--taskrouter-limit", f"{key}={_num(rate)}"]
        if self.taskrouter_limits:
            args += ["--taskrouter-window", _num(self.window)]
        return args

    def emulator_command(self) -> str:
        """How the emulator of each run of this row is started (``--port 0`` omitted)."""
        limit = (
            [] if self.account_limit is None else ["--concurrency-limit", str(self.account_limit)]
        )
        return " ".join(
            [
                "python -m stuck_tasks.emulator --tls",
                f"--tasks {self.tasks} --seed 1 --stuck-share {_num(self.stuck_share)}",
                f"--latency {_num(LATENCY)}",
                *limit,
                *self.emulator_extra(),
            ]
        )

    def limits_text(self) -> str:
        parts = []
        if self.account_limit is not None:
            parts.append(f"{self.account_limit} concurrent")
        if self.rps_limit is not None:
            parts.append(f"{_num(self.rps_limit)}/s")
        if self.taskrouter_limits:
            rates = ", ".join(f"{k} {_num(r)}/s" for k, r in self.taskrouter_limits)
            parts.append(f"{rates} (window {_num(self.window)} s)")
        return "; ".join(parts) or "none"

    def bounds(self, job: _emu.Job) -> list[tuple[str, float]]:
        """Every lower bound on the wall time that the emulator's limits imply for this job."""
        fewest = job.fewest_requests
        out = []
        if self.account_limit is not None:
            out.append(
                (
                    f"{fewest:,} × {_num(LATENCY)} s ÷ {self.account_limit} in flight",
                    job.floor_seconds(LATENCY, self.account_limit),
                )
            )
        if self.rps_limit is not None:
            out.append((f"{fewest:,} ÷ {_num(self.rps_limit)}/s", fewest / self.rps_limit))
        counts = job.taskrouter_requests()
        for key, rate in self.taskrouter_limits:
            budget = int(rate * self.window + 1e-9)
            count = counts.get(key, 0)
            out.append(
                (
                    f"{key}: ({count:,} − {budget:,}) ÷ {_num(rate)}/s",
                    job.taskrouter_floor(key, rate, self.window),
                )
            )
        return out

    def floor(self, job: _emu.Job) -> tuple[float, str]:
        """The largest bound: (seconds, how it was computed)."""
        text, seconds = max(self.bounds(job), key=lambda b: b[1])
        return seconds, text


def size_rows(sizes: Sequence[int], concurrencies: Sequence[str]) -> list[Row]:
    return [Row(f"{size:,} tasks", size, conc) for size in sizes for conc in concurrencies]


SCENARIOS: dict[str, Callable[[int], Row]] = {
    "rate-limited": lambda n: Row(
        f"rate-limited {n:,}",
        n,
        "default",
        stuck_share=1.0,
        taskrouter_limits=(("Task-List", 5.0), ("Task-Fetch", 50.0), ("Task-Update", 25.0)),
    ),
    "storm": lambda n: Row("the storm", n, "64", stuck_share=1.0, account_limit=10, rps_limit=40.0),
}


@dataclass
class ToolRun:
    row: str
    tasks: int
    concurrency: str
    wall: float
    elapsed: float
    requests: dict[str, int]
    emulator_requests: dict[str, int]
    fewest: int
    floor: float
    floor_by: str
    bounds: str  # every bound of Row.bounds, "text = seconds"
    throttled_emulator: int
    throttled_tool: int
    retries: int
    paced_seconds: float
    backoff_seconds: float
    max_in_flight: int
    rss_mb: float
    cpu_seconds: float
    emulator_cpu_seconds: float
    other_cpu_seconds: float  # the machine's busy CPU during the run, less tool and emulator
    steal_seconds: float
    failed: int
    unknown: int
    not_attempted: int
    check: str
    ok: bool
    extra_closed: int
    exit_code: int

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def efficiency(self) -> float:
        return self.floor / self.wall

    @property
    def throttled_share(self) -> float:
        """The emulator's 429s ÷ the emulator's requests (429s included)."""
        return self.throttled_emulator / max(1, self.emulator_requests.get("requests", 0))

    @property
    def cpu_ms_per_1000(self) -> float:
        return self.cpu_seconds / max(1, self.total) * 1e6

    @property
    def other_cores(self) -> float:
        return self.other_cpu_seconds / max(1e-9, self.wall)

    @property
    def skewed(self) -> bool:
        return self.other_cores > SKEWED_CORES

    @property
    def counts_match(self) -> bool:
        return self.total == self.emulator_requests.get("requests", -1) and all(
            self.requests.get(k, 0) == self.emulator_requests.get(k, 0)
            for k in (*KINDS, *SETUP_KINDS)
        )


@dataclass
class Config:
    row: Row
    runs: list[ToolRun] = field(default_factory=list)
    discarded: list[ToolRun] = field(default_factory=list)  # skewed by other work, re-run
    load_before: str = ""
    busy_before: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return self.row.name, self.row.concurrency

    def median(self, attr: str) -> float:
        return statistics.median(float(getattr(r, attr)) for r in self.runs)

    @property
    def efficiency(self) -> float:
        return self.runs[0].floor / self.median("wall")

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runs)

    def worst(self, attr: str) -> float:
        return max(float(getattr(r, attr)) for r in self.runs)


def tool_command(tool: str, concurrency: str, audit: Path) -> list[str]:
    cmd = [*shlex.split(tool), "--yes", "--json", "--quiet", "--max-changes", "1000000"]
    if concurrency != "default":
        cmd += ["--concurrency", concurrency]
    return [*cmd, "--audit-log", str(audit)]


def run_tool(row: Row, *, tool: str, src: str | None, workdir: Path, n: int, tls: bool) -> ToolRun:
    with _emu.emulator(
        row.tasks,
        latency=LATENCY,
        concurrency_limit=row.account_limit,
        stuck_share=row.stuck_share,
        extra=row.emulator_extra(),
        tls=tls,
        src=src,
    ) as info:
        job = _emu.job_of(_emu.state(info.base_url, info.ca_file))
        floor, floor_by = row.floor(job)
        tag = f"{row.name}-{row.concurrency}-{n}".replace(" ", "_").replace(",", "")
        out = workdir / f"tool-{tag}.json"
        env = _emu.python_env(src, info.ca_file)  # aiohttp reads SSL_CERT_FILE at import
        env.update(
            STUCK_TASKS_BASE_URL=info.base_url,
            TWILIO_ACCOUNT_SID=info.account_sid,
            TWILIO_AUTH_TOKEN=info.auth_token,
            TWILIO_WORKSPACE_SID=info.workspace_sid,
        )
        audit = workdir / f"audit-{tag}.jsonl"
        wrapper = [sys.executable, str(HERE / "_one.py"), str(out), "--"]
        machine0, emu0 = _emu.MachineCpu.now(), _emu.process_cpu(info.pid)
        answer = subprocess.run(
            [*wrapper, *tool_command(tool, row.concurrency, audit)],
            capture_output=True,
            text=True,
            env=env,
            cwd=workdir,  # no stray .env, audit logs stay in the scratch directory
            check=True,
        )
        machine1, emu1 = _emu.MachineCpu.now(), _emu.process_cpu(info.pid)
        usage = json.loads(answer.stdout)
        final = _emu.state(info.base_url, info.ca_file)
    try:
        document = json.loads(out.read_text(encoding="utf-8"))
    except ValueError as error:
        raise RuntimeError(
            f"stuck-tasks printed no JSON (exit {usage['exit_code']}): {answer.stderr[-2000:]}"
        ) from error
    verdict = _emu.check(job, final)
    api = document["api"]
    stats = final["stats"]
    cpu = usage["user_seconds"] + usage["system_seconds"]
    emulator_cpu = emu1 - emu0
    return ToolRun(
        row=row.name,
        tasks=row.tasks,
        concurrency=row.concurrency,
        wall=usage["wall_seconds"],
        elapsed=float(document.get("elapsed_seconds") or 0.0),
        requests=dict(api["requests"]),
        emulator_requests={k: int(v) for k, v in stats.items()},
        fewest=job.fewest_requests,
        floor=floor,
        floor_by=floor_by,
        bounds="; ".join(f"{text} = {seconds:.1f}" for text, seconds in row.bounds(job)),
        throttled_emulator=int(stats.get("429", 0)),
        throttled_tool=int(api.get("throttled_429", 0)),
        retries=int(api.get("retries", 0)),
        paced_seconds=float(api.get("paced_seconds", 0.0)),
        backoff_seconds=float(api.get("backoff_seconds", 0.0)),
        max_in_flight=int(stats.get("max_in_flight", 0)),
        rss_mb=usage["max_rss_kb"] / 1024,
        cpu_seconds=cpu,
        emulator_cpu_seconds=emulator_cpu,
        other_cpu_seconds=max(0.0, machine1.busy - machine0.busy - cpu - emulator_cpu),
        steal_seconds=machine1.steal - machine0.steal,
        failed=int((document.get("failed") or {}).get("total", 0)),
        unknown=int((document.get("unknown") or {}).get("total", 0)),
        not_attempted=int(document.get("not_attempted") or 0),
        check=verdict.text(),
        ok=verdict.ok and usage["exit_code"] == 0,
        extra_closed=verdict.extra_closed,
        exit_code=usage["exit_code"],
    )


@dataclass
class BaselineRun:
    tasks: int
    open_tasks: int
    examined: int
    wall: float
    requests: dict[str, int]
    check: str

    @property
    def sampled(self) -> bool:
        return self.examined < self.open_tasks

    @property
    def estimate(self) -> float:
        """Wall time for every open task: measured, or extrapolated linearly from the sample."""
        return self.wall * self.open_tasks / max(1, self.examined)


def run_baseline(tasks: int, sample: int | None, *, src: str | None, tls: bool) -> BaselineRun:
    with _emu.emulator(
        tasks, latency=LATENCY, concurrency_limit=ACCOUNT_LIMIT, tls=tls, src=src
    ) as info:
        job = _emu.job_of(_emu.state(info.base_url, info.ca_file))
        result = baseline.clean_up(
            info.base_url,
            info.account_sid,
            info.auth_token,
            info.workspace_sid,
            limit=sample,
            ca_file=info.ca_file,
        )
        final = _emu.state(info.base_url, info.ca_file)
    verdict = _emu.check(job, final, expect_all=sample is None or sample >= job.open_tasks)
    return BaselineRun(
        tasks,
        job.open_tasks,
        result["examined"],
        result["wall_seconds"],
        result["requests"],
        verdict.text(),
    )


def startup_times(tool: str, runs: int, *, src: str | None) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [*shlex.split(tool), "--help"],
            capture_output=True,
            check=True,
            env=_emu.python_env(src),
        )
        times.append(time.perf_counter() - started)
    return times


def wait_until_quiet(say: Callable[[str], None], *, patience: float) -> tuple[str, float]:
    """Wait (at most ``patience`` seconds) until other work keeps < QUIET_CORES busy; returns
    the ``uptime`` line and the busy cores measured last."""
    waited = 0.0
    while True:
        busy = _emu.busy_cores(3.0)
        if busy < QUIET_CORES or waited >= patience:
            if busy >= QUIET_CORES:
                say(f"  machine still busy ({busy:.2f} cores) after {waited:.0f} s; going on")
            return _emu.load(), busy
        say(f"  machine busy ({busy:.2f} cores, {_emu.load()}): waiting 30 s")
        time.sleep(30)
        waited += 33


# ----------------------------------------------------------------------------- output


def _kinds(requests: dict[str, int]) -> str:
    return " / ".join(str(requests.get(k, 0)) for k in KINDS)


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def tool_table(configs: Sequence[Config]) -> list[str]:
    lines = [
        "| row | --concurrency | emulator limits | runs | wall s (median; each run) | floor s | efficiency | requests: total (list / task fetch / call fetch / conference list / update) | = emulator | 429s (share of requests) | failed | peak in flight | peak RSS MB | CPU ms per 1k req | check |",
        "|---|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in configs:
        r = c.runs[0]
        walls = ", ".join(f"{x.wall:.1f}" for x in c.runs)
        checks = "PASS" if c.ok else "; ".join(f"{x.check} exit {x.exit_code}" for x in c.runs)
        match = "yes" if all(x.counts_match for x in c.runs) else "NO"
        worst = max(c.runs, key=lambda x: x.throttled_share)
        failed = max(x.failed + x.unknown + x.not_attempted for x in c.runs)
        lines.append(
            f"| {c.row.name} | {c.row.concurrency_text} | {c.row.limits_text()} | {len(c.runs)} "
            f"| {c.median('wall'):.1f} ({walls}) | {r.floor:.1f} | {c.efficiency:.2f} "
            f"| {r.total:,} ({_kinds(r.requests)}) | {match} "
            f"| {worst.throttled_emulator:,} ({_pct(worst.throttled_share)}) | {failed} "
            f"| {c.worst('max_in_flight'):.0f} | {c.worst('rss_mb'):.0f} "
            f"| {c.median('cpu_ms_per_1000'):.0f} | {checks} |"
        )
    return lines


def floor_table(configs: Sequence[Config]) -> list[str]:
    lines = [
        "| row | fewest requests | bounds (s) | floor: the largest |",
        "|---|---:|---|---|",
    ]
    seen = set()
    for c in configs:
        if c.row.name in seen:  # the same job at another --concurrency
            continue
        seen.add(c.row.name)
        r = c.runs[0]
        lines.append(f"| {c.row.name} | {r.fewest:,} | {r.bounds} | {r.floor_by} |")
    return lines


def time_table(configs: Sequence[Config]) -> list[str]:
    lines = [
        "| row | --concurrency | tool CPU s | emulator CPU s | cores busy (tool + emulator) ÷ wall | other work, cores | paced s (sum over requests) | back-off s (sum) | retries | 429s the tool saw | runs discarded |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in configs:
        busy = statistics.median((x.cpu_seconds + x.emulator_cpu_seconds) / x.wall for x in c.runs)
        lines.append(
            f"| {c.row.name} | {c.row.concurrency_text} | {c.median('cpu_seconds'):.1f} "
            f"| {c.median('emulator_cpu_seconds'):.1f} | {busy:.2f} "
            f"| {c.worst('other_cores'):.2f} | {c.median('paced_seconds'):.1f} "
            f"| {c.median('backoff_seconds'):.1f} | {c.median('retries'):.0f} "
            f"| {c.median('throttled_tool'):.0f} | {len(c.discarded)} |"
        )
    return lines


def before_table(configs: Sequence[Config]) -> list[str]:
    """The new and HTTPS rows against issue 13's numbers (the previous tool, its author's runs)."""
    by = {c.key: c for c in configs}
    lines = [
        "| row | before: issue 13 (previous tool, measured by the issue's author) | now (median) |",
        "|---|---|---|",
    ]
    rl = next((c for c in configs if c.row.name.startswith("rate-limited")), None)
    if rl:
        worst = max(rl.runs, key=lambda x: x.throttled_share)
        lines.append(
            f"| {rl.row.name} | 83 s; 13 % of requests 429; 7 tasks failed (exit 3) "
            f"| {rl.median('wall'):.1f} s (efficiency {rl.efficiency:.2f}); "
            f"{_pct(worst.throttled_share)} 429 ({worst.throttled_emulator} of "
            f"{worst.emulator_requests['requests']:,}, the worst run); "
            f"{max(x.failed + x.unknown for x in rl.runs)} failed "
            f"(exit {', '.join(str(x.exit_code) for x in rl.runs)}) |"
        )
    storm = next((c for c in configs if c.row.name == "the storm"), None)
    if storm:
        worst = max(storm.runs, key=lambda x: x.throttled_share)
        missed = [x.check for x in storm.runs]
        lines.append(
            f"| the storm | 34 % of requests 429 (716 of 2,119); 2 stuck tasks not closed "
            f"| {_pct(worst.throttled_share)} 429 ({worst.throttled_emulator} of "
            f"{worst.emulator_requests['requests']:,}, the worst run); "
            f"{storm.median('wall'):.1f} s (efficiency {storm.efficiency:.2f}); "
            f"{'every stuck task closed' if storm.ok else '; '.join(missed)} |"
        )
    for conc, before in (("100", 0.79), ("200", 0.72)):
        c = by.get(("5,000 tasks", conc))
        if c:
            lines.append(
                f"| 5,000 tasks over HTTPS, --concurrency {conc}"
                f"{' vs a limit of 100' if conc == '200' else ''} | efficiency {before:.2f} "
                f"| efficiency {c.efficiency:.2f} ({c.median('wall'):.1f} s, floor "
                f"{c.runs[0].floor:.1f} s) |"
            )
    return lines


def baseline_table(bases: Sequence[BaselineRun], configs: Sequence[Config]) -> list[str]:
    lines = [
        "| tasks | baseline measured | baseline wall s for all tasks | stuck-tasks --concurrency 100 (median) | speed-up | vs default 25 | check |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for b in bases:
        how = (
            f"first {b.examined:,} of {b.open_tasks:,} open tasks in {b.wall:.0f} s, "
            "extrapolated linearly"
            if b.sampled
            else f"all {b.open_tasks:,} open tasks"
        )
        tool = {
            c.row.concurrency: c.median("wall")
            for c in configs
            if c.row.name == f"{b.tasks:,} tasks"
        }
        at100 = tool.get("100")
        at25 = tool.get("default")
        lines.append(
            f"| {b.tasks:,} | {how} | {b.estimate:,.0f} "
            f"| {f'{at100:.1f}' if at100 else '-'} "
            f"| {f'{b.estimate / at100:.0f}x' if at100 else '-'} "
            f"| {f'{b.estimate / at25:.0f}x' if at25 else '-'} | {b.check} |"
        )
    return lines


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**NOT met**"


def _cpu_share(c: Config) -> str:
    """The tool's CPU against its wall time: near 1, the row is bound by the machine's speed
    (the tool's event loop runs on one core), not by Twilio's latency and limits."""
    return (
        f"; the tool's CPU {c.median('cpu_seconds'):.1f} s in {c.median('wall'):.1f} s "
        f"({c.median('cpu_seconds') / c.median('wall'):.2f} of a core)"
    )


def machine_speed(ceiling: list[list[dict[str, Any]]] | None) -> str:
    """How fast this machine is at the work every row is made of: the CPU twilio's own async
    client spends per task fetch in the ceiling's loop (no code of the tool). Runs on other
    days compare through it: the tool's CPU per request moves with it."""
    mine = [r["cpu_ms_per_1000"] for runs in ceiling or [] for r in runs if r["mode"] == "async"]
    if not mine:
        return "(the ceiling was not run)"
    return (
        f"twilio's own async client spent {statistics.median(mine):.0f} µs of CPU per task "
        "fetch (the ceiling, below, median); the tool's CPU per request moves with this figure"
    )


def targets(configs: Sequence[Config], bases: Sequence[BaselineRun]) -> list[str]:
    out = []
    by = {c.key: c for c in configs}
    rl = next((c for c in configs if c.row.name.startswith("rate-limited")), None)
    if rl:
        share = max(x.throttled_share for x in rl.runs)
        eff = rl.efficiency
        out.append(
            f"- {rl.row.name}: every task closed: {rl.ok} (failed "
            f"{max(x.failed + x.unknown for x in rl.runs)}); 429s {_pct(share)} of requests "
            f"(target ≤ 5 %); efficiency {eff:.2f} (target ≥ 0.8): "
            f"{_verdict(rl.ok and share <= 0.05 and eff >= 0.8)}"
        )
    storm = next((c for c in configs if c.row.name == "the storm"), None)
    if storm:
        share = max(x.throttled_share for x in storm.runs)
        out.append(
            f"- the storm: every task closed: {storm.ok}; 429s {_pct(share)} of requests "
            f"(target ≤ 15 %): {_verdict(storm.ok and share <= 0.15)}"
        )
    sizes = [c.row.tasks for c in configs if c.row.name.endswith(" tasks")]
    big = max(sizes, default=0)
    c100 = by.get((f"{big:,} tasks", "100"))
    if c100:
        z = max(r.throttled_emulator for r in c100.runs)
        out.append(
            f"- {big:,} tasks, --concurrency 100: efficiency {c100.efficiency:.2f} "
            f"(target ≥ 0.85), 429s {z} (target 0){_cpu_share(c100)}: "
            f"{_verdict(c100.efficiency >= 0.85 and z == 0)}"
        )
    c200 = by.get((f"{big:,} tasks", "200"))
    if c200:
        out.append(
            f"- {big:,} tasks, --concurrency 200 (limit 100): efficiency {c200.efficiency:.2f} "
            f"(target ≥ 0.75), every stuck task closed: {c200.ok}{_cpu_share(c200)}: "
            f"{_verdict(c200.efficiency >= 0.75 and c200.ok)}"
        )
    if configs:
        worst = max(configs, key=lambda c: c.worst("rss_mb"))
        rss = worst.worst("rss_mb")
        out.append(
            f"- peak RSS over every row: {rss:.0f} MB ({worst.row.name}, --concurrency "
            f"{worst.row.concurrency_text}; target ≤ 150 MB): {_verdict(rss <= 150)}"
        )
    for b in bases:
        c = by.get((f"{b.tasks:,} tasks", "100"))
        if c and b.tasks == 5000:
            ratio = b.estimate / c.median("wall")
            out.append(
                f"- 5,000 tasks: {ratio:.0f}x the sequential loop (target ≥ 40x): "
                f"{_verdict(ratio >= 40)}"
            )
    return out


def write_results(path: Path, sections: dict[str, Any]) -> None:
    m = sections["machine"]
    text = [
        "# Benchmark results",
        "",
        f"- Command: `{sections['command']}`",
        f"- Tool: `{sections['tool']}`"
        + (f" with PYTHONPATH={sections['src']}" if sections["src"] else ""),
        f"- Date: {m['date']}; `nproc`: {m['nproc']}; CPU: {m['cpu']}; Python {m['python']}",
        f"- Machine speed: {sections['speed']}",
        f"- Load before: `{sections['load_before']}`",
        f"- Load after: `{sections['load_after']}`",
        f"- Total benchmark time: {sections['elapsed'] / 60:.1f} min",
        f"- Transport: {sections['transport_kind']}. Every run starts a fresh emulator process "
        "(it shares the machine's 2 cores with the tool):",
        "",
        *[f"  - {name}: `{command}`" for name, command in sections["emulators"]],
        "",
        f"- The tool's package ({sections['compiled']}) is byte-compiled first, as `pip install` "
        "does: an editable install under PYTHONDONTWRITEBYTECODE would compile every module "
        "again in every run.",
        "",
        "## stuck-tasks",
        "",
        *sections["tool_table"],
        "",
        "Wall time is the tool process's, start-up included (median; every run in brackets); "
        "efficiency = floor ÷ median wall. Request counts are the tool's `--json` "
        '`api.requests` (first run; 429s included) and "= emulator" says whether they equal the '
        "emulator's own `/__emulator/state` stats (every kind, set-up included) in every run. "
        "429s are the emulator's count and their share of the emulator's requests (the run "
        "with the largest share). Failed: the tool's `--json` `failed` + `unknown` + "
        "`not_attempted` (the worst run). Peak in flight is the emulator's. CPU is the tool "
        "process's user+system time (rusage) per 1,000 of its requests; peak RSS its "
        "`ru_maxrss`, each run in a fresh `bench/_one.py`. PASS: exit 0, zero wrong closures "
        "(every mutation: status pending/reserved/assigned before, channel voice, call terminal "
        "at write time and ended ≥ 2 min before, completed iff it was assigned, no task written "
        "twice) and zero missed (every stuck task closed).",
        "",
        "### Floors",
        "",
        *sections["floor_table"],
        "",
        "**Fewest requests**, counted from the emulator's state before the run: ⌈open tasks ÷ "
        "1,000⌉ list pages + 1 task fetch per open voice task (the list returns attributes "
        "null, so the fetch is needed to read call_sid; its ETag is reused for If-Match) + 1 "
        "call fetch per distinct call SID those attributes name (missing calls included: the "
        "404 is the answer) + up to 3 conference list requests per open voice task whose "
        "attributes name no call and no conference (`FriendlyName=WT…` with `Status=in-progress`, "
        "then `init`, then `completed`, stopping at a live one: 3 when none is live) + 1 "
        "update per stuck task (open voice task whose call is terminal and ended ≥ 2 min before "
        "the run started) + 2 set-up requests (account, workspace). **Bounds**: the account's "
        "concurrency limit (fewest × 0.08 s ÷ the limit), its per-second limit (fewest ÷ "
        "rate), and each TaskRouter-limited endpoint (its fewest requests less the budget of "
        "one window, rate × window, admitted at once, ÷ its rate). The floor is the largest.",
        "",
        "### Where the time and CPU went",
        "",
        *sections["time_table"],
        "",
        "Medians over the runs (other work: the worst run). Cores busy: the tool's plus the "
        "emulator's CPU seconds ÷ wall (2.0 = both cores saturated). Other work: the machine's "
        "busy CPU (`/proc/stat`) during the run less the tool's and the emulator's, ÷ wall; a "
        f"run above {SKEWED_CORES} cores was discarded and re-run once the machine was quiet "
        f"(below {QUIET_CORES} busy cores over 3 s, checked before every row). Paced and "
        "back-off are the tool's `--json` sums over requests (not wall time).",
        "",
        "### Machine load before each row",
        "",
        *sections["load_table"],
        "",
        "## Before and after (issue 13)",
        "",
        *sections["before_table"],
        "",
        "The before column is copied from issue 13: the previous tool, measured by the issue's "
        "author, not re-run here.",
        "",
        "## Baseline: the sequential twilio-library loop (bench/baseline.py)",
        "",
        *sections["baseline_table"],
        "",
        "## Targets",
        "",
        *sections["targets"],
        "",
        "## Transport CPU per request (bench/transport.py)",
        "",
        *sections["transport"],
        "",
        "## The ceiling: a loop that only fetches (bench/transport.py)",
        "",
        *sections["ceiling"],
        "",
        "## Start-up",
        "",
        sections["startup"],
        "",
        sections.get("discussion", ""),
    ]
    path.write_text("\n".join(text).rstrip() + "\n", encoding="utf-8")


def load_table(configs: Sequence[Config]) -> list[str]:
    lines = ["| row | --concurrency | busy cores before | `uptime` before |", "|---|---|---:|---|"]
    for c in configs:
        lines.append(
            f"| {c.row.name} | {c.row.concurrency_text} | {c.busy_before:.2f} | {c.load_before} |"
        )
    return lines


# ----------------------------------------------------------------------------- main


# The bare fetch loop's ceiling is measured as the big rows run: the account's limit in
# flight, at the rows' latency.
CEILING_CONCURRENCY = ACCOUNT_LIMIT
CEILING_MODES = ("async", "tool")
# The transport comparison's own conditions (CPU per request, not the ceiling).
TRANSPORT_CONCURRENCY = 50
TRANSPORT_LATENCY = 0.02
TRANSPORT_CLIENTS = {  # {n}: how many at a time
    "sync": "twilio sync client (TwilioHttpClient), ThreadPoolExecutor, {n} workers",
    "async": "twilio async client (AsyncTwilioHttpClient), asyncio, {n} concurrent",
    "tool": "stuck-tasks' own gateway (TwilioGateway.fetch_task), asyncio, {n} concurrent",
}


def byte_compile(tool: str, src: str | None) -> str:
    """Byte-compile the package the tool runs, as ``pip install`` does, and say where it is.

    With an editable install (``pip install -e``) nothing is compiled ahead, and where
    PYTHONDONTWRITEBYTECODE is set (as on this machine) no ``.pyc`` is ever written: every run
    would compile every module of the tool again, about 0.2 s of its start-up that no
    installed copy pays."""
    python = Path(tool).with_name("python")
    if not python.exists():
        python = Path(sys.executable)
    where = subprocess.run(
        [str(python), "-c", "import os, stuck_tasks; print(os.path.dirname(stuck_tasks.__file__))"],
        env=_emu.python_env(src),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        [str(python), "-m", "compileall", "-q", where], env=_emu.python_env(src), check=True
    )
    return where


def measure(
    args: argparse.Namespace, rows: Sequence[Row], say: Callable[[str], None]
) -> dict[str, Any]:
    """Run everything; returns the raw measurements (what --raw writes and --reuse reads)."""
    tls = not args.plain_http
    started = time.monotonic()
    raw: dict[str, Any] = {
        "machine": _emu.machine(),
        "load_before": _emu.load(),
        "tls": tls,
        "rows": [r.__dict__ for r in rows],
        "tool": [],
        "discarded": [],
        "loads": {},
        "baseline": [],
        "transport": None,
        "ceiling": [],  # one list of results per run
    }
    say(f"machine: {raw['machine']}; {raw['load_before']}")
    raw["compiled"] = byte_compile(args.tool, args.src)
    say(f"byte-compiled {raw['compiled']}")
    with tempfile.TemporaryDirectory(prefix="stuck-tasks-bench-") as tmp:
        work = Path(tmp)
        for row in rows:
            load, busy = wait_until_quiet(say, patience=args.quiet_patience)
            raw["loads"][f"{row.name}|{row.concurrency}"] = [load, busy]
            say(f"{row.name}, --concurrency {row.concurrency_text}: {load}")
            spent, kept, discarded, n = 0.0, 0, 0, 0
            while kept < args.repeat and not (kept and spent >= args.config_budget):
                t0 = time.monotonic()
                r = run_tool(row, tool=args.tool, src=args.src, workdir=work, n=n, tls=tls)
                spent += time.monotonic() - t0
                n += 1
                say(
                    f"  wall {r.wall:6.1f} s, floor {r.floor:5.1f} s ({r.floor_by}), "
                    f"efficiency {r.efficiency:.2f}, requests {r.total} "
                    f"({', '.join(f'{k} {v}' for k, v in sorted(r.requests.items()))}; emulator "
                    f"{'agrees' if r.counts_match else 'DIFFERS: ' + json.dumps(r.emulator_requests)}), "
                    f"429s {r.throttled_emulator} = {_pct(r.throttled_share)} (tool saw "
                    f"{r.throttled_tool}, retries {r.retries}, paced {r.paced_seconds:.1f} s, "
                    f"back-off {r.backoff_seconds:.1f} s), failed {r.failed}, unknown "
                    f"{r.unknown}, not attempted {r.not_attempted}, exit {r.exit_code}, peak in "
                    f"flight {r.max_in_flight}, RSS {r.rss_mb:.0f} MB, CPU {r.cpu_seconds:.1f} s "
                    f"= {r.cpu_ms_per_1000:.0f} ms/1k req, emulator CPU "
                    f"{r.emulator_cpu_seconds:.1f} s, other work {r.other_cores:.2f} cores, "
                    f"steal {r.steal_seconds:.1f} s, {r.check}"
                    + (f" (+{r.extra_closed} aged past grace)" if r.extra_closed else "")
                )
                if r.skewed and discarded < args.max_discards:
                    discarded += 1
                    raw["discarded"].append(r.__dict__)
                    say("  other work used the machine during this run: discarded, re-running")
                    wait_until_quiet(say, patience=args.quiet_patience)
                    continue
                kept += 1
                raw["tool"].append(r.__dict__)
        if not args.no_baseline:
            for size in args.size_list:
                sample = None if size <= args.baseline_full_max else args.baseline_sample
                wait_until_quiet(say, patience=args.quiet_patience)
                b = run_baseline(size, sample, src=args.src, tls=tls)
                raw["baseline"].append(b.__dict__)
                say(
                    f"baseline {size:>6} tasks: {b.examined} examined in {b.wall:.1f} s "
                    f"({'extrapolated' if b.sampled else 'measured'}: {b.estimate:.0f} s for all "
                    f"{b.open_tasks}), requests {b.requests}, {b.check}"
                )
        if not args.no_transport:
            wait_until_quiet(say, patience=args.quiet_patience)
            raw["transport"] = {
                "requests": args.transport_requests,
                "results": transport.measure(
                    requests=args.transport_requests,
                    concurrency=TRANSPORT_CONCURRENCY,
                    latency=TRANSPORT_LATENCY,
                    src=args.src,
                    workdir=work,
                ),
            }
            for r in raw["transport"]["results"]:
                say(f"transport {r['mode']}: {r['cpu_ms_per_1000']:.0f} CPU ms per 1,000 requests")
        for run in range(args.ceiling_runs):
            wait_until_quiet(say, patience=args.quiet_patience)
            results = transport.measure(
                requests=args.ceiling_requests,
                concurrency=CEILING_CONCURRENCY,
                latency=LATENCY,
                src=args.src,
                workdir=work,
                modes=CEILING_MODES,
            )
            raw["ceiling"].append(results)
            for fetched in results:
                say(
                    f"ceiling {run + 1} {fetched['mode']}: {fetched['wall_seconds']:.1f} s, "
                    f"efficiency {fetched['efficiency']:.2f}, "
                    f"{fetched['cpu_ms_per_1000']:.0f} CPU ms per 1,000 requests"
                )
    raw["startup"] = startup_times(args.tool, args.startup_runs, src=args.src)
    raw["elapsed"] = time.monotonic() - started
    raw["load_after"] = _emu.load()
    say(f"load after: {raw['load_after']}")
    return raw


def transport_table(measured: dict[str, Any] | None, tls: bool) -> list[str]:
    if not measured:
        return ["(not run)"]
    lines = [
        "| client | CPU ms per 1,000 requests | fetches | wall s |",
        "|---|---:|---:|---:|",
    ]
    for r in measured["results"]:
        lines.append(
            f"| {TRANSPORT_CLIENTS[r['mode']].format(n=TRANSPORT_CONCURRENCY)} "
            f"| {r['cpu_ms_per_1000']:.0f} | {r['requests']} "
            f"| {r['wall_seconds']:.1f} |"
        )
    return [
        *lines,
        "",
        f"Task fetches against the {'HTTPS' if tls else 'plain HTTP'} emulator at "
        f"{TRANSPORT_LATENCY * 1000:.0f} ms latency "
        f"with no account limit, {measured['requests']} measured after {transport.WARM_UP} "
        f"warm-up ones, each client in its own process ({TRANSPORT_CONCURRENCY} pooled "
        "connections each); CPU is that "
        "process's rusage over the measured fetches (all threads).",
    ]


def ceiling_table(runs: list[list[dict[str, Any]]] | None, configs: Sequence[Config]) -> list[str]:
    """What a loop that does nothing but fetch tasks reaches, next to the tool's own row."""
    if not runs:
        return ["(not run)"]
    lines = [
        "| client | efficiency (median; each run) | wall s (median) | floor s | CPU ms per 1k req "
        "(median) |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode in CEILING_MODES:
        mine = [r for results in runs for r in results if r["mode"] == mode]
        if not mine:
            continue
        effs = [r["efficiency"] for r in mine]
        lines.append(
            f"| {TRANSPORT_CLIENTS[mode].format(n=CEILING_CONCURRENCY)} "
            f"| {statistics.median(effs):.2f} ({', '.join(f'{e:.2f}' for e in effs)}) "
            f"| {statistics.median(r['wall_seconds'] for r in mine):.1f} | {mine[0]['floor']:.1f} "
            f"| {statistics.median(r['cpu_ms_per_1000'] for r in mine):.0f} |"
        )
    plain = [
        c
        for c in configs
        if c.row.concurrency == str(CEILING_CONCURRENCY)
        and c.row.rps_limit is None
        and not c.row.taskrouter_limits
    ]
    if plain:  # the largest of the plain rows at that concurrency
        big = max(plain, key=lambda c: c.row.tasks)
        each = ", ".join(f"{r.efficiency:.2f}" for r in big.runs)
        lines.append(
            f"| stuck-tasks itself: the {big.row.name} row at --concurrency "
            f"{CEILING_CONCURRENCY} (above; it lists, fetches calls, writes and records too) "
            f"| {big.efficiency:.2f} ({each}) | {big.median('wall'):.1f} | "
            f"{big.runs[0].floor:.1f} | {big.median('cpu_ms_per_1000'):.0f} |"
        )
    requests = runs[0][0]["requests"]
    return [
        *lines,
        "",
        f"{requests:,} task fetches after {transport.WARM_UP} warm-up ones, "
        f"{CEILING_CONCURRENCY} at a time, against the emulator at {LATENCY * 1000:.0f} ms with no "
        "account limit, each client in its own process, each run with a fresh emulator; floor = "
        f"fetches × {LATENCY} s ÷ {CEILING_CONCURRENCY}, efficiency = floor ÷ wall, as for the "
        "tool's rows, except that the loop's wall leaves out its start-up and its connections' "
        "set-up (the warm-up), which the tool's includes. Such a loop lists nothing, decides "
        "nothing, writes nothing and records nothing; it shows how near the floor the twilio "
        "library and this machine let any client come, and so what the tool's own work costs "
        "at the same concurrency.",
    ]


def render(raw: dict[str, Any], args: argparse.Namespace, say: Callable[[str], None]) -> None:
    """The tables, to stdout and to RESULTS.md."""
    rows = [
        Row(**{**d, "taskrouter_limits": tuple(tuple(x) for x in d["taskrouter_limits"])})
        for d in raw["rows"]
    ]
    configs = []
    for row in rows:
        key = [row.name, row.concurrency]
        load, busy = raw["loads"].get(f"{row.name}|{row.concurrency}", ["", 0.0])
        config = Config(
            row,
            [ToolRun(**r) for r in raw["tool"] if [r["row"], r["concurrency"]] == key],
            [ToolRun(**r) for r in raw["discarded"] if [r["row"], r["concurrency"]] == key],
            load,
            busy,
        )
        if config.runs:
            configs.append(config)
    bases = [BaselineRun(**b) for b in raw["baseline"]]
    times = raw["startup"]
    startup = (
        f"`stuck-tasks --help`: median {statistics.median(times) * 1000:.0f} ms over "
        f"{len(times)} runs (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}); "
        "target well under 500 ms."
    )
    sections = {
        "machine": raw["machine"],
        "command": raw["command"],
        "tool": raw["tool_command"],
        "src": raw["src"],
        "elapsed": raw["elapsed"],
        "load_before": raw["load_before"],
        "load_after": raw["load_after"],
        "compiled": f"`{raw['compiled']}`" if raw.get("compiled") else "(not recorded)",
        "transport_kind": "HTTPS with the emulator's throw-away CA (`--tls`), trusted by the "
        "tool through `SSL_CERT_FILE`"
        if raw["tls"]
        else "plain HTTP (--plain-http)",
        "emulators": list(dict.fromkeys((c.row.name, c.row.emulator_command()) for c in configs)),
        "tool_table": tool_table(configs),
        "floor_table": floor_table(configs),
        "time_table": time_table(configs),
        "load_table": load_table(configs),
        "before_table": before_table(configs),
        "baseline_table": baseline_table(bases, configs) if bases else ["(not run)"],
        "targets": targets(configs, bases),
        "transport": transport_table(raw["transport"], raw["tls"]),
        "ceiling": ceiling_table(raw.get("ceiling"), configs),
        "speed": machine_speed(raw.get("ceiling")),
        "startup": startup,
    }
    discussion = HERE / "DISCUSSION.md"
    if discussion.exists():
        sections["discussion"] = discussion.read_text(encoding="utf-8")
    say("")
    for line in [
        *sections["tool_table"],
        "",
        *sections["floor_table"],
        "",
        *sections["time_table"],
        "",
        *sections["before_table"],
        "",
        *sections["baseline_table"],
        "",
        *sections["targets"],
        "",
        startup,
    ]:
        say(line)
    write_results(args.results, sections)
    say(f"\nwrote {args.results} (benchmark time {raw['elapsed'] / 60:.1f} min)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default="1000,5000,20000", help="comma-separated task counts")
    p.add_argument(
        "--concurrency",
        default="100,default,200",
        help="comma-separated --concurrency values; 'default' passes no flag (25)",
    )
    p.add_argument(
        "--scenarios",
        default="rate-limited,storm",
        help=f"comma-separated scenario rows ({', '.join(SCENARIOS)}), or '' for none",
    )
    p.add_argument("--scenario-tasks", type=int, default=2000, help="tasks of each scenario row")
    p.add_argument("--repeat", type=int, default=3, help="runs per configuration (median)")
    p.add_argument(
        "--config-budget",
        type=float,
        default=900.0,
        help="no further repeat of a configuration once its runs took this many seconds",
    )
    p.add_argument(
        "--quiet-patience",
        type=float,
        default=1200.0,
        help="seconds to wait for a quiet machine before a row (then it runs anyway)",
    )
    p.add_argument(
        "--max-discards", type=int, default=3, help="skewed runs re-run per configuration"
    )
    p.add_argument(
        "--plain-http",
        action="store_true",
        help="serve plain HTTP instead of HTTPS (only to compare; flatters the client's CPU)",
    )
    p.add_argument("--baseline-sample", type=int, default=500)
    p.add_argument(
        "--baseline-full-max",
        type=int,
        default=1000,
        help="run the baseline over every task up to this size; sample above it",
    )
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--no-transport", action="store_true")
    p.add_argument("--transport-requests", type=int, default=3000)
    p.add_argument(
        "--ceiling-runs",
        type=int,
        default=3,
        help="runs of the bare fetch loop at the big rows' concurrency and latency (0: none)",
    )
    p.add_argument("--ceiling-requests", type=int, default=20000)
    p.add_argument("--startup-runs", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="1,000 tasks, 1 run, short baseline")
    p.add_argument(
        "--tool",
        default=str(Path(sys.executable).with_name("stuck-tasks")),
        help="the command to benchmark (default: the installed stuck-tasks)",
    )
    p.add_argument("--src", help="put this source tree first on PYTHONPATH (tool and emulator)")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--raw", type=Path, default=None, help="also write every measurement as JSON")
    p.add_argument(
        "--reuse",
        type=Path,
        default=None,
        help="measure nothing: write RESULTS.md again from a --raw file (e.g. after editing "
        "DISCUSSION.md)",
    )
    args = p.parse_args(argv)
    say = lambda text: print(text, flush=True)  # noqa: E731
    if args.reuse is not None:
        render(json.loads(args.reuse.read_text(encoding="utf-8")), args, say)
        return 0
    if args.quick:
        args.sizes, args.repeat, args.baseline_sample, args.scenarios = "1000", 1, 200, ""
        args.baseline_full_max, args.transport_requests, args.startup_runs = 0, 1000, 5
        args.ceiling_runs, args.ceiling_requests = 1, 2000
    args.size_list = [int(s) for s in args.sizes.split(",") if s]
    concurrencies = [c.strip() for c in args.concurrency.split(",") if c.strip()]
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    rows = [
        *size_rows(args.size_list, concurrencies),
        *(SCENARIOS[n](args.scenario_tasks) for n in names),
    ]
    raw = measure(args, rows, say)
    raw["command"] = "python bench/run.py" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)
    )
    raw["tool_command"], raw["src"] = args.tool, args.src
    if args.raw is not None:
        args.raw.write_text(json.dumps(raw, indent=2), encoding="utf-8")
    render(raw, args, say)
    return 0 if all(r["ok"] for r in raw["tool"]) else 1


if __name__ == "__main__":
    sys.exit(main())
