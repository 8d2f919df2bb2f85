"""The benchmark: stuck-tasks against an emulated Twilio with 80 ms latency and a 100-request limit.

python bench/run.py                      # the full benchmark (about 20-25 minutes on 2 cores)
python bench/run.py --quick              # 1,000 tasks, one run each, a short baseline (~2 min)
python bench/run.py --sizes 1000,5000 --repeat 1

For each size and concurrency a fresh emulator process is seeded (``--stuck-share 0.8``), the
installed ``stuck-tasks --yes --json --quiet --max-changes 1000000`` runs once inside a fresh
``bench/_one.py`` wrapper (wall time, CPU, peak RSS), and the emulator's final state is checked:
zero wrong closures, zero missed stuck tasks. Then the sequential twilio-library loop
(bench/baseline.py), the transport CPU comparison (bench/transport.py) and the start-up time of
``stuck-tasks --help``. The table goes to stdout and, with the machine details, to RESULTS.md.
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
from collections.abc import Sequence
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
KINDS = ("list_tasks", "fetch_task", "fetch_call", "list_conferences", "update_task")
SETUP_KINDS = ("fetch_account", "fetch_workspace", "list_workspaces")


@dataclass
class ToolRun:
    tasks: int
    concurrency: str  # "100", "default" or "200"
    wall: float
    elapsed: float
    requests: dict[str, int]
    emulator_requests: dict[str, int]
    fewest: int
    floor: float
    throttled_emulator: int
    throttled_tool: int
    retries: int
    max_in_flight: int
    rss_mb: float
    cpu_seconds: float
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
    def cpu_ms_per_1000(self) -> float:
        return self.cpu_seconds / max(1, self.total) * 1e6

    @property
    def counts_match(self) -> bool:
        return self.total == self.emulator_requests.get("requests", -1) and all(
            self.requests.get(k, 0) == self.emulator_requests.get(k, 0) for k in KINDS
        )


@dataclass
class Config:
    tasks: int
    concurrency: str
    runs: list[ToolRun] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(float(getattr(r, attr)) for r in self.runs)


def tool_command(tool: str, concurrency: str, audit: Path) -> list[str]:
    cmd = [*shlex.split(tool), "--yes", "--json", "--quiet", "--max-changes", "1000000"]
    if concurrency != "default":
        cmd += ["--concurrency", concurrency]
    return [*cmd, "--audit-log", str(audit)]


def run_tool(
    tasks: int, concurrency: str, *, tool: str, src: str | None, workdir: Path, n: int
) -> ToolRun:
    with _emu.emulator(tasks, latency=LATENCY, concurrency_limit=ACCOUNT_LIMIT, src=src) as info:
        job = _emu.job_of(_emu.state(info.base_url))
        out = workdir / f"tool-{tasks}-{concurrency}-{n}.json"
        env = _emu.python_env(src)
        env.update(
            STUCK_TASKS_BASE_URL=info.base_url,
            TWILIO_ACCOUNT_SID=info.account_sid,
            TWILIO_AUTH_TOKEN=info.auth_token,
            TWILIO_WORKSPACE_SID=info.workspace_sid,
        )
        audit = workdir / f"audit-{tasks}-{concurrency}-{n}.jsonl"
        wrapper = [sys.executable, str(HERE / "_one.py"), str(out), "--"]
        answer = subprocess.run(
            [*wrapper, *tool_command(tool, concurrency, audit)],
            capture_output=True,
            text=True,
            env=env,
            cwd=workdir,  # no stray .env, audit logs stay in the scratch directory
            check=True,
        )
        usage = json.loads(answer.stdout)
        final = _emu.state(info.base_url)
    try:
        document = json.loads(out.read_text(encoding="utf-8"))
    except ValueError as error:
        raise RuntimeError(
            f"stuck-tasks printed no JSON (exit {usage['exit_code']}): {answer.stderr[-2000:]}"
        ) from error
    verdict = _emu.check(job, final)
    api = document["api"]
    stats = final["stats"]
    return ToolRun(
        tasks=tasks,
        concurrency=concurrency,
        wall=usage["wall_seconds"],
        elapsed=float(document.get("elapsed_seconds") or 0.0),
        requests=dict(api["requests"]),
        emulator_requests={k: int(v) for k, v in stats.items()},
        fewest=job.fewest_requests,
        floor=job.floor_seconds(LATENCY, ACCOUNT_LIMIT),
        throttled_emulator=int(stats.get("429", 0)),
        throttled_tool=int(api.get("throttled_429", 0)),
        retries=int(api.get("retries", 0)),
        max_in_flight=int(stats.get("max_in_flight", 0)),
        rss_mb=usage["max_rss_kb"] / 1024,
        cpu_seconds=usage["user_seconds"] + usage["system_seconds"],
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


def run_baseline(tasks: int, sample: int | None, *, src: str | None) -> BaselineRun:
    with _emu.emulator(tasks, latency=LATENCY, concurrency_limit=ACCOUNT_LIMIT, src=src) as info:
        job = _emu.job_of(_emu.state(info.base_url))
        result = baseline.clean_up(
            info.base_url, info.account_sid, info.auth_token, info.workspace_sid, limit=sample
        )
        final = _emu.state(info.base_url)
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


# ----------------------------------------------------------------------------- output


def _kinds(requests: dict[str, int]) -> str:
    return " / ".join(str(requests.get(k, 0)) for k in KINDS)


def tool_table(configs: Sequence[Config]) -> list[str]:
    lines = [
        "| tasks | --concurrency | runs | wall s (median) | floor s | efficiency | requests: total (list / task fetch / call fetch / conference list / update) | = emulator | 429s | peak in flight | peak RSS MB | CPU ms per 1k req | check |",
        "|---:|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for c in configs:
        r = c.runs[0]
        walls = ", ".join(f"{x.wall:.1f}" for x in c.runs)
        checks = "PASS" if all(x.ok for x in c.runs) else "; ".join(x.check for x in c.runs)
        conc = "25 (default)" if c.concurrency == "default" else c.concurrency
        match = "yes" if all(x.counts_match for x in c.runs) else "NO"
        lines.append(
            f"| {c.tasks:,} | {conc} | {len(c.runs)} | {c.median('wall'):.1f} ({walls}) "
            f"| {r.floor:.1f} | {r.floor / c.median('wall'):.2f} "
            f"| {r.total:,} ({_kinds(r.requests)}) | {match} "
            f"| {max(x.throttled_emulator for x in c.runs)} | {max(x.max_in_flight for x in c.runs)} "
            f"| {max(x.rss_mb for x in c.runs):.0f} | {c.median('cpu_ms_per_1000'):.0f} | {checks} |"
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
        tool = {c.concurrency: c.median("wall") for c in configs if c.tasks == b.tasks}
        at100 = tool.get("100")
        at25 = tool.get("default")
        lines.append(
            f"| {b.tasks:,} | {how} | {b.estimate:,.0f} "
            f"| {f'{at100:.1f}' if at100 else '-'} "
            f"| {f'{b.estimate / at100:.0f}x' if at100 else '-'} "
            f"| {f'{b.estimate / at25:.0f}x' if at25 else '-'} | {b.check} |"
        )
    return lines


def targets(configs: Sequence[Config], bases: Sequence[BaselineRun]) -> list[str]:
    out = []
    by = {(c.tasks, c.concurrency): c for c in configs}
    big = max((c.tasks for c in configs), default=0)
    c100 = by.get((big, "100"))
    if c100:
        eff = c100.runs[0].floor / c100.median("wall")
        z = max(r.throttled_emulator for r in c100.runs)
        out.append(
            f"- {big:,} tasks, --concurrency 100: efficiency {eff:.2f} (target ≥ 0.75), "
            f"429s {z} (target 0): {'met' if eff >= 0.75 and z == 0 else 'NOT met'}"
        )
        rss = max(r.rss_mb for c in configs if c.tasks == big for r in c.runs)
        out.append(
            f"- peak RSS at {big:,} tasks: {rss:.0f} MB (target ≤ 150 MB): "
            f"{'met' if rss <= 150 else 'NOT met'}"
        )
    c200 = by.get((big, "200"))
    if c200:
        eff = c200.runs[0].floor / c200.median("wall")
        ok = all(r.ok for r in c200.runs)
        out.append(
            f"- {big:,} tasks, --concurrency 200 (limit 100): efficiency {eff:.2f} "
            f"(target ≥ 0.6), every stuck task closed: {ok}: "
            f"{'met' if eff >= 0.6 and ok else 'NOT met'}"
        )
    for b in bases:
        c = by.get((b.tasks, "100"))
        if c and b.tasks == 5000:
            ratio = b.estimate / c.median("wall")
            out.append(
                f"- 5,000 tasks: {ratio:.0f}x the sequential loop (target ≥ 40x): "
                f"{'met' if ratio >= 40 else 'NOT met'}"
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
        f"- Emulator: `python -m stuck_tasks.emulator --tasks N --latency {LATENCY} "
        f"--concurrency-limit {ACCOUNT_LIMIT} --seed 1 --stuck-share 0.8`, a fresh process per run "
        "(both processes share the machine's cores).",
        f"- Total benchmark time: {sections['elapsed'] / 60:.1f} min",
        "",
        "## stuck-tasks",
        "",
        *sections["tool_table"],
        "",
        "Wall time is the tool process's, start-up included (median; every run in brackets). "
        'Request counts are the tool\'s `--json` `api.requests` (first run) and "= emulator" says '
        "whether they equal the emulator's own `/__emulator/state` stats in every run; 429s and "
        "peak in flight are the emulator's. CPU is the tool process's user+system time (rusage) "
        "per 1,000 requests; peak RSS its `ru_maxrss`, each run in a fresh `bench/_one.py`. "
        "PASS: zero wrong closures (every mutation: status pending/reserved/assigned before, "
        "channel voice, call terminal at write time and ended ≥ 2 min before, completed iff it "
        "was assigned, no task written twice) and zero missed (every stuck task closed).",
        "",
        "**Fewest requests** (the floor's numerator), counted from the emulator's state before "
        "the run: ⌈open tasks ÷ 1,000⌉ list pages + 1 task fetch per open voice task (the list "
        "returns attributes null, so the fetch is needed to read call_sid; its ETag is reused for "
        "If-Match) + 1 call fetch per distinct call SID those attributes name (missing calls "
        "included: the 404 is the answer) + 1 conference lookup by name per open voice task whose "
        "attributes name no call and no conference (issue 6's outbound-task evidence) + 1 update "
        "per stuck task (open voice task whose call is "
        "terminal and ended ≥ 2 min before the run started) + 2 set-up requests (account, "
        "workspace). **Floor** = fewest × 0.08 s ÷ 100; **efficiency** = floor ÷ wall.",
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
        "## Start-up",
        "",
        sections["startup"],
        "",
        sections.get("discussion", ""),
    ]
    path.write_text("\n".join(text).rstrip() + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- main


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
    p.add_argument("--repeat", type=int, default=3, help="runs per configuration (median)")
    p.add_argument(
        "--config-budget",
        type=float,
        default=120.0,
        help="no further repeat of a configuration once its runs took this many seconds",
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
        "--reuse-tool",
        type=Path,
        default=None,
        help="take the stuck-tasks runs from a --raw file of an earlier run instead of running them",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeat, args.baseline_sample = "1000", 1, 200
        args.baseline_full_max, args.transport_requests, args.startup_runs = 0, 1000, 5
    sizes = [int(s) for s in args.sizes.split(",") if s]
    concurrencies = [c.strip() for c in args.concurrency.split(",") if c.strip()]
    started = time.monotonic()
    say = lambda text: print(text, flush=True)  # noqa: E731
    machine = _emu.machine()
    say(f"machine: {machine}")

    configs: list[Config] = []
    bases: list[BaselineRun] = []
    with tempfile.TemporaryDirectory(prefix="stuck-tasks-bench-") as tmp:
        work = Path(tmp)
        reused = (
            json.loads(args.reuse_tool.read_text(encoding="utf-8")) if args.reuse_tool else None
        )
        for size in sizes:
            for conc in concurrencies:
                config = Config(size, conc)
                if reused is not None:
                    config.runs = [
                        ToolRun(**r)
                        for r in reused["tool"]
                        if r["tasks"] == size and r["concurrency"] == conc
                    ]
                    if config.runs:
                        configs.append(config)
                    continue
                spent = 0.0
                for n in range(args.repeat):
                    if n and spent >= args.config_budget:
                        break
                    t0 = time.monotonic()
                    r = run_tool(size, conc, tool=args.tool, src=args.src, workdir=work, n=n)
                    spent += time.monotonic() - t0
                    config.runs.append(r)
                    say(
                        f"{size:>6} tasks, --concurrency {conc:>7}: wall {r.wall:6.1f} s, "
                        f"floor {r.floor:5.1f} s, efficiency {r.efficiency:.2f}, "
                        f"requests {r.total} ({', '.join(f'{k} {v}' for k, v in sorted(r.requests.items()))}; "
                        f"emulator {'agrees' if r.counts_match else 'DIFFERS: ' + json.dumps(r.emulator_requests)}), "
                        f"429s {r.throttled_emulator} (tool saw {r.throttled_tool}, retries {r.retries}), "
                        f"peak in flight {r.max_in_flight}, RSS {r.rss_mb:.0f} MB, "
                        f"CPU {r.cpu_seconds:.1f} s = {r.cpu_ms_per_1000:.0f} ms/1k req, "
                        f"{r.check}"
                        + (f" (+{r.extra_closed} aged past grace)" if r.extra_closed else "")
                    )
                configs.append(config)
        if not args.no_baseline:
            for size in sizes:
                sample = None if size <= args.baseline_full_max else args.baseline_sample
                b = run_baseline(size, sample, src=args.src)
                bases.append(b)
                say(
                    f"baseline {size:>6} tasks: {b.examined} examined in {b.wall:.1f} s "
                    f"({'extrapolated' if b.sampled else 'measured'}: {b.estimate:.0f} s for all "
                    f"{b.open_tasks}), requests {b.requests}, {b.check}"
                )
        transport_lines = ["(not run)"]
        if not args.no_transport:
            results = transport.measure(
                requests=args.transport_requests,
                concurrency=50,
                latency=0.02,
                src=args.src,
                workdir=work,
            )
            names = {
                "sync": "twilio sync client (TwilioHttpClient), ThreadPoolExecutor, 50 workers",
                "async": "twilio async client (AsyncTwilioHttpClient), asyncio, 50 concurrent",
                "tool": "stuck-tasks' own gateway (TwilioGateway.fetch_task), asyncio, 50 concurrent",
            }
            transport_lines = [
                "| client | CPU ms per 1,000 requests | fetches | wall s |",
                "|---|---:|---:|---:|",
            ]
            for r in results:
                transport_lines.append(
                    f"| {names[r['mode']]} | {r['cpu_ms_per_1000']:.0f} | {r['requests']} "
                    f"| {r['wall_seconds']:.1f} |"
                )
                say(f"transport {r['mode']}: {r['cpu_ms_per_1000']:.0f} CPU ms per 1,000 requests")
            transport_lines += [
                "",
                f"Task fetches against the emulator at 20 ms latency with no account limit, "
                f"{args.transport_requests} measured after {transport.WARM_UP} warm-up ones, "
                "each client in its own process; CPU is that process's rusage over the measured "
                "fetches (all threads).",
            ]
    times = startup_times(args.tool, args.startup_runs, src=args.src)
    startup = (
        f"`stuck-tasks --help`: median {statistics.median(times) * 1000:.0f} ms over "
        f"{len(times)} runs (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}); "
        "target well under 500 ms."
    )
    say(startup)
    elapsed = time.monotonic() - started
    sections = {
        "machine": machine,
        "command": "python bench/run.py"
        + (
            ""
            if argv is None and len(sys.argv) == 1
            else " " + " ".join(sys.argv[1:] if argv is None else argv)
        ),
        "tool": args.tool,
        "src": args.src,
        "elapsed": elapsed,
        "tool_table": tool_table(configs),
        "baseline_table": baseline_table(bases, configs) if bases else ["(not run)"],
        "targets": targets(configs, bases),
        "transport": transport_lines,
        "startup": startup,
    }
    discussion = HERE / "DISCUSSION.md"
    if discussion.exists():
        sections["discussion"] = discussion.read_text(encoding="utf-8")
    say("")
    for line in [
        *sections["tool_table"],
        "",
        *sections["baseline_table"],
        "",
        *sections["targets"],
    ]:
        say(line)
    write_results(args.results, sections)
    if args.raw is not None:
        args.raw.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "tool": [r.__dict__ for c in configs for r in c.runs],
                    "baseline": [b.__dict__ for b in bases],
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    say(f"\nwrote {args.results} ({elapsed / 60:.1f} min)")
    all_ok = all(r.ok for c in configs for r in c.runs)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
