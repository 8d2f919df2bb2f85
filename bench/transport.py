"""Client-side CPU per request: twilio's sync client on threads vs its async client on asyncio.

python bench/transport.py [--requests 3000] [--concurrency 50] [--latency 0.02]

Each client runs in its own process against one HTTPS emulator (~20 ms latency, no account
limit; its CA trusted through SSL_CERT_FILE / REQUESTS_CA_BUNDLE) and fetches tasks; CPU is that process's user+system time over the measured fetches only.
Modes: ``sync`` (TwilioHttpClient, ThreadPoolExecutor), ``async`` (AsyncTwilioHttpClient,
asyncio workers), ``tool`` (this project's gateway, i.e. what stuck-tasks itself pays).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
MODES = ("sync", "async", "tool")
WARM_UP = 200


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(run: Callable[[list[str]], None], sids: list[str]) -> dict[str, float]:
    run(sids[:WARM_UP])  # connections, imports, caches
    cpu, wall = _cpu(), time.perf_counter()
    run(sids[WARM_UP:])
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    n = len(sids) - WARM_UP
    return {
        "requests": n,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "cpu_ms_per_1000": cpu / n * 1e6,
    }


def _sync(info: dict[str, Any], sids: list[str], workers: int) -> dict[str, float]:
    from requests.adapters import HTTPAdapter
    from twilio.rest import Client

    from baseline import RewritingHttpClient

    http = RewritingHttpClient(info["base_url"], ca_file=info["ca_file"], timeout=30)
    for scheme in ("http://", "https://"):  # twilio's own https pool holds only cpu_count + 4
        http.session.mount(scheme, HTTPAdapter(pool_maxsize=workers, pool_connections=workers))
    client = Client(
        info["account_sid"], info["auth_token"], account_sid=info["account_sid"], http_client=http
    )
    tasks = client.taskrouter.v1.workspaces(info["workspace_sid"]).tasks

    def run(batch: list[str]) -> None:
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(lambda sid: tasks(sid).fetch(), batch):
                pass

    return _measure(run, sids)


def _async(info: dict[str, Any], sids: list[str], workers: int) -> dict[str, float]:
    from twilio.http.async_http_client import AsyncTwilioHttpClient
    from twilio.rest import Client

    target = urlsplit(info["base_url"])

    class Rewriting(AsyncTwilioHttpClient):  # type: ignore[misc]
        """To the emulator, naming the Twilio host in ``Host`` (as baseline.RewritingHttpClient)."""

        async def request(
            self, method: str, url: str, *args: Any, headers: Any = None, **kwargs: Any
        ) -> Any:
            parts = urlsplit(url)
            url = urlunsplit((target.scheme, target.netloc, parts.path, parts.query, ""))
            headers = {**(headers or {}), "Host": parts.netloc}
            return await super().request(method, url, *args, headers=headers, **kwargs)

    async def run_batch(batch: list[str]) -> None:
        http = Rewriting(timeout=30)
        client = Client(
            info["account_sid"],
            info["auth_token"],
            account_sid=info["account_sid"],
            http_client=http,
        )
        tasks = client.taskrouter.v1.workspaces(info["workspace_sid"]).tasks
        queue = iter(batch)

        async def worker() -> None:
            for sid in queue:
                await tasks(sid).fetch_async()

        await asyncio.gather(*(worker() for _ in range(workers)))
        await http.session.close()

    return _measure(lambda batch: asyncio.run(run_batch(batch)), sids)


def tool_gateway(info: dict[str, Any], workers: int) -> Any:
    """stuck-tasks' own gateway (with its limiter and transport) on the emulator ``info`` names;
    made inside the event loop that uses it."""
    from stuck_tasks.clock import TwilioClock
    from stuck_tasks.gateway import TwilioGateway
    from stuck_tasks.ratecontrol import AdaptiveLimiter, Metrics, Stop
    from stuck_tasks.settings import Connection, Credentials

    creds = Credentials(info["account_sid"], info["auth_token"], info["account_sid"])
    # The gateway's transport connects to base_url and names the Twilio host in Host itself.
    connection = Connection(creds, base_url=info["base_url"], timeout=30, pool_size=workers)
    metrics = Metrics()
    return TwilioGateway(
        connection,
        limiter=AdaptiveLimiter(workers, metrics=metrics),
        metrics=metrics,
        clock=TwilioClock(),
        stop=Stop(),
    )


def _tool(info: dict[str, Any], sids: list[str], workers: int) -> dict[str, float]:
    async def run_batch(batch: list[str]) -> None:
        gateway = tool_gateway(info, workers)
        queue = iter(batch)

        async def worker() -> None:
            for sid in queue:
                await gateway.fetch_task(info["workspace_sid"], sid)

        await asyncio.gather(*(worker() for _ in range(workers)))
        await gateway.aclose()

    return _measure(lambda batch: asyncio.run(run_batch(batch)), sids)


def _child(mode: str, spec_file: str) -> int:
    spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    run = {"sync": _sync, "async": _async, "tool": _tool}[mode]
    result = run(spec["info"], spec["sids"], spec["concurrency"])
    sys.stdout.write(json.dumps({"mode": mode, **result}) + "\n")
    return 0


def measure(
    *,
    requests: int,
    concurrency: int,
    latency: float,
    src: str | None,
    workdir: Path,
    modes: tuple[str, ...] = MODES,
) -> list[dict[str, Any]]:
    """Start one emulator, then each mode in its own process; returns one result per mode.

    Each result also has its ``floor`` (the measured fetches × latency ÷ concurrency: what they
    would take if the client cost nothing) and ``efficiency`` (floor ÷ wall), as bench/run.py
    computes them for the tool."""
    import _emu

    results = []
    with _emu.emulator(1000, latency=latency, concurrency_limit=None, src=src) as info:
        sids = [t["sid"] for t in _emu.state(info.base_url, info.ca_file)["tasks"]]
        wanted = (sids * (1 + (requests + WARM_UP) // len(sids)))[: requests + WARM_UP]
        spec_file = workdir / "transport-spec.json"
        spec = {"info": info.__dict__, "sids": wanted, "concurrency": concurrency}
        spec_file.write_text(json.dumps(spec), encoding="utf-8")
        for mode in modes:
            out = subprocess.run(
                [sys.executable, str(Path(__file__)), "--child", mode, str(spec_file)],
                capture_output=True,
                text=True,
                check=True,
                env=_emu.python_env(src, info.ca_file),  # aiohttp reads SSL_CERT_FILE at import
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result["floor"] = result["requests"] * latency / concurrency
            result["efficiency"] = result["floor"] / result["wall_seconds"]
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--latency", type=float, default=0.02)
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {MODES}")
    p.add_argument("--src", help="put this source tree of stuck_tasks first (PYTHONPATH)")
    p.add_argument("--child", nargs=2, metavar=("MODE", "SPEC"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(*args.child)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        results = measure(
            requests=args.requests,
            concurrency=args.concurrency,
            latency=args.latency,
            src=args.src,
            workdir=Path(tmp),
            modes=tuple(m for m in args.modes.split(",") if m),
        )
    for r in results:
        sys.stdout.write(
            f"{r['mode']:>5}: {r['cpu_ms_per_1000']:6.0f} CPU ms per 1,000 requests "
            f"({r['requests']} fetches, {r['wall_seconds']:.1f} s wall, floor "
            f"{r['floor']:.1f} s, efficiency {r['efficiency']:.2f})\n"
        )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
