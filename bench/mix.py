"""What the tool's own work costs: its requests without the tool, against the tool, same hour.

python bench/mix.py [--tasks 20000] [--concurrency 100] [--rounds 2]

Each round runs, each against a fresh HTTPS emulator seeded as the benchmark's size rows are:

- ``requests only``: the same task fetches, call fetches and updates as a run of the tool
  (from the emulator's state before the run: every open voice task fetched, each distinct call
  it names fetched once, each stuck task updated with the fetch's ETag as If-Match) through
  the tool's own gateway, limiter and transport, ``--concurrency`` at a time, in one process.
  Nothing is listed, decided, gated, settled, audited or reported; the conference lookups (a
  few per cent of the requests) are left out. CPU and wall time exclude start-up.
- ``stuck-tasks``: the installed tool on the same job, as bench/run.py runs it (start-up
  included).

The difference is the tool's own work: listing, deciding, the pipeline, settling, the audit log
and the tally.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(spec_file: str) -> int:
    from stuck_tasks.errors import StuckTasksError
    from transport import tool_gateway

    spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    info, workers = spec["info"], spec["concurrency"]
    stuck, workspace = set(spec["stuck"]), info["workspace_sid"]
    counts = {"fetch_task": 0, "fetch_call": 0, "update_task": 0}

    async def main() -> None:
        gateway = tool_gateway(info, workers)
        seen: set[str] = set()
        queue = iter(spec["tasks"])

        async def worker() -> None:
            for sid in queue:
                task = await gateway.fetch_task(workspace, sid)
                counts["fetch_task"] += 1
                call = task.refs.call_sid if task.refs else None
                if call and call not in seen:
                    seen.add(call)
                    counts["fetch_call"] += 1
                    with contextlib.suppress(StuckTasksError):  # a missing call: the 404
                        await gateway.fetch_call(call)
                if sid in stuck:
                    status = "completed" if task.status == "assigned" else "canceled"
                    await gateway.update_task(
                        workspace, sid, status=status, reason="bench/mix.py", if_match=task.etag
                    )
                    counts["update_task"] += 1

        await asyncio.gather(*(worker() for _ in range(workers)))
        await gateway.aclose()

    cpu, wall = _cpu(), time.perf_counter()
    asyncio.run(main())
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    result = {"cpu_seconds": cpu, "wall_seconds": wall, "requests": counts}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def requests_only(tasks: int, concurrency: int) -> dict[str, Any]:
    import _emu
    from run import ACCOUNT_LIMIT, LATENCY

    with (
        _emu.emulator(tasks, latency=LATENCY, concurrency_limit=ACCOUNT_LIMIT) as info,
        tempfile.TemporaryDirectory() as tmp,
    ):
        initial = _emu.state(info.base_url, info.ca_file)
        job = _emu.job_of(initial)
        voice = [
            t["sid"]
            for t in initial["tasks"]
            if t["status"] in _emu.OPEN and t["channel"] == "voice"
        ]
        spec_file = Path(tmp) / "mix-spec.json"
        spec = {
            "info": info.__dict__,
            "tasks": voice,
            "stuck": sorted(job.stuck),
            "concurrency": concurrency,
        }
        spec_file.write_text(json.dumps(spec), encoding="utf-8")
        out = subprocess.run(
            [sys.executable, str(Path(__file__)), "--child", str(spec_file)],
            capture_output=True,
            text=True,
            check=True,
            env=_emu.python_env(None, info.ca_file),
        )
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        final = _emu.state(info.base_url, info.ca_file)
    n = sum(result["requests"].values())
    result["floor"] = n * LATENCY / ACCOUNT_LIMIT
    result["stuck"] = len(job.stuck)
    result["closed"] = sum(1 for m in final["mutations"] if m["task_sid"] in job.stuck)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tasks", type=int, default=20000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--tool",
        default=str(Path(sys.executable).with_name("stuck-tasks")),
        help="the command to compare (default: the installed stuck-tasks)",
    )
    p.add_argument("--child", metavar="SPEC", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args.child)
    import run

    row = run.Row(f"{args.tasks:,} tasks", args.tasks, str(args.concurrency))
    lines = [
        "| round | what | requests | wall s | floor s | efficiency | CPU s | CPU ms per request |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="stuck-tasks-mix-") as tmp:
        for n in range(args.rounds):
            r = requests_only(args.tasks, args.concurrency)
            total = sum(r["requests"].values())
            closed = f"{r['closed']:,} of {r['stuck']:,} stuck closed"
            lines.append(
                f"| {n + 1} | requests only ({closed}) | {total:,} | {r['wall_seconds']:.1f} | "
                f"{r['floor']:.1f} | {r['floor'] / r['wall_seconds']:.2f} | "
                f"{r['cpu_seconds']:.1f} | {r['cpu_seconds'] / total * 1000:.3f} |"
            )
            print(lines[-1], flush=True)
            t = run.run_tool(row, tool=args.tool, src=None, workdir=Path(tmp), n=n, tls=True)
            lines.append(
                f"| {n + 1} | stuck-tasks ({t.check}) | {t.total:,} | {t.wall:.1f} | "
                f"{t.floor:.1f} | {t.efficiency:.2f} | {t.cpu_seconds:.1f} | "
                f"{t.cpu_ms_per_1000 / 1000:.3f} |"
            )
            print(lines[-1], flush=True)
    print("\n".join(["", *lines]))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
