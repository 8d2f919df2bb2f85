"""Standalone emulator for benchmarks: seeds one workspace, prints one JSON line, serves.

python -m stuck_tasks.emulator --port 0 --tasks 20000 --seed 1 --latency 0.08
python -m stuck_tasks.emulator --tls --taskrouter-limit Task-Update=25 --taskrouter-limit Task-Fetch=50

Clients connect to base_url but must send the Twilio host they mean as the Host header
(e.g. Host: taskrouter.twilio.com); the loopback address itself answers 404 to Twilio routes.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .access import KEY_KINDS
from .emulator import Emulator
from .faults import CLOSED_CHANNEL_CLOSE_MODES, Faults
from .hosts import REGIONS
from .limits import RESOURCE_KEYS
from .seed import seed_outage
from .sids import SidSource
from .tls import LoopbackTls, loopback_tls


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stuck_tasks.emulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (0 = a free port)")
    p.add_argument("--tasks", type=int, default=300, help="tasks to seed")
    p.add_argument("--seed", type=int, default=0, help="seed for data and faults")
    p.add_argument(
        "--fixed-sids",
        action="store_true",
        help="draw every SID from --seed: the same SIDs on every start (secrets stay random)",
    )
    p.add_argument("--stuck-share", type=float, default=0.8, help="share of stuck voice tasks")
    p.add_argument(
        "--kinds",
        choices=("voice", "all"),
        default="voice",
        help="voice tasks only, or also conference/Flex Conversations/wrap-up kinds",
    )
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--latency-jitter", type=float, default=0.0)
    p.add_argument("--spike-rate", type=float, default=0.0)
    p.add_argument("--spike-latency", type=float, default=1.0)
    p.add_argument("--concurrency-limit", type=int, default=None)
    p.add_argument("--rps-limit", type=float, default=None)
    p.add_argument("--retry-after", type=float, default=None)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--drop-before-write-rate", type=float, default=0.0)
    p.add_argument("--drop-after-write-rate", type=float, default=0.0)
    p.add_argument("--error-after-write-rate", type=float, default=0.0)
    p.add_argument("--html-rate", type=float, default=0.0)
    p.add_argument("--max-page-size", type=int, default=None)
    p.add_argument("--closed-task-ttl", type=float, default=300.0)
    p.add_argument("--platform-event-rate", type=float, default=0.0)
    p.add_argument("--html-after-write-rate", type=float, default=0.0)
    p.add_argument("--garbled-after-write-rate", type=float, default=0.0)
    p.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        help="seconds Twilio's clock is ahead of the real one (negative: behind)",
    )
    p.add_argument(
        "--list-attributes", action="store_true", help="task list pages carry attributes"
    )
    p.add_argument("--closed-channel-close", choices=CLOSED_CHANNEL_CLOSE_MODES, default="refuse")
    p.add_argument(
        "--revoke-after",
        type=int,
        default=None,
        help="revoke the credentials after this many requests (401/20003 from then on)",
    )
    p.add_argument("--region", choices=REGIONS, default="us1", help="the account's region")
    p.add_argument(
        "--key-kind",
        choices=("none", *KEY_KINDS),
        default="none",
        help="also create an API key of this kind (printed as api_key/api_secret)",
    )
    p.add_argument(
        "--permissions",
        default="",
        help="comma-separated permissions of a restricted key, e.g. "
        "/twilio/taskrouter/workspaces/tasks/read",
    )
    _add_limit_and_tls_flags(p)
    return p


# ---------------------------------------------------------------- TaskRouter limits and TLS


def _add_limit_and_tls_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--taskrouter-limit",
        action="append",
        default=[],
        type=_key_rate,
        metavar="KEY=RATE",
        help=f"requests per second for one TaskRouter resource key, per workspace (repeatable; "
        f"keys: {', '.join(RESOURCE_KEYS)})",
    )
    p.add_argument(
        "--taskrouter-window",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the window TaskRouter limits are averaged over (default 10)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help='serve HTTPS with a throw-away CA (needs trustme); the JSON line adds "ca_file"',
    )


def _key_rate(text: str) -> tuple[str, float]:
    key, sep, rate = text.partition("=")
    try:
        if sep:
            return key.strip(), float(rate)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected KEY=RATE such as Task-Update=25, got {text!r}")


def _with_limits(p: argparse.ArgumentParser, args: argparse.Namespace, faults: Faults) -> Faults:
    try:
        return dataclasses.replace(
            faults,
            taskrouter_limits=tuple(args.taskrouter_limit),
            taskrouter_window=args.taskrouter_window,
        )
    except ValueError as exc:
        p.error(str(exc))


def _tls(args: argparse.Namespace) -> LoopbackTls | None:
    """The throw-away CA and certificate for ``--tls``; the CA file goes when the process ends."""
    if not args.tls:
        return None
    tls = loopback_tls()
    atexit.register(_remove, tls.ca_file)
    return tls


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    permissions = tuple(p.strip() for p in args.permissions.split(",") if p.strip())
    if permissions and args.key_kind != "restricted":
        parser.error("--permissions needs --key-kind restricted")
    faults = Faults(
        latency=args.latency,
        latency_jitter=args.latency_jitter,
        spike_rate=args.spike_rate,
        spike_latency=args.spike_latency,
        concurrency_limit=args.concurrency_limit,
        rps_limit=args.rps_limit,
        retry_after=args.retry_after,
        error_rate=args.error_rate,
        drop_before_write_rate=args.drop_before_write_rate,
        drop_after_write_rate=args.drop_after_write_rate,
        error_after_write_rate=args.error_after_write_rate,
        html_rate=args.html_rate,
        max_page_size=args.max_page_size,
        closed_task_ttl=args.closed_task_ttl,
        platform_event_rate=args.platform_event_rate,
        html_after_write_rate=args.html_after_write_rate,
        garbled_after_write_rate=args.garbled_after_write_rate,
        clock_offset=args.clock_offset,
        list_attributes=args.list_attributes,
        closed_channel_close=args.closed_channel_close,
        revoke_after=args.revoke_after,
        seed=args.seed,
    )
    faults = _with_limits(parser, args, faults)
    emu = Emulator(faults, sids=SidSource(args.seed) if args.fixed_sids else None)
    acct = emu.add_account("Benchmark Contact Center", region=args.region)
    try:
        key = (
            None
            if args.key_kind == "none"
            else emu.add_api_key(acct.sid, "benchmark", kind=args.key_kind, permissions=permissions)
        )
    except ValueError as exc:
        parser.error(str(exc))
    ws = emu.add_workspace(acct.sid, "Benchmark Support")
    seed_outage(
        emu,
        acct.sid,
        ws.sid,
        n_tasks=args.tasks,
        seed=args.seed,
        stuck_share=args.stuck_share,
        kinds=args.kinds,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tls = _tls(args)
    base_url = emu.start(
        host=args.host, port=args.port, ssl_context=tls.server_context if tls else None
    )
    line = {
        "base_url": base_url,
        "account_sid": acct.sid,
        # The emulator's own throw-away credential: the benchmark client needs it.
        "auth_token": acct.auth_token,
        "api_key": None if key is None else key.sid,
        "api_secret": None if key is None else key.secret,
        "region": acct.region,
        "workspace_sid": ws.sid,
        "pid": os.getpid(),
    }
    if tls is not None:
        line["ca_file"] = tls.ca_file
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
