"""The baseline: a plain sequential clean-up loop on the twilio library, one request at a time.

List the open tasks (page_size=1000); for each voice task fetch it, read call_sid, fetch the
call, and if the call is over (and has been for 2 minutes) cancel or complete the task.

python bench/baseline.py --tasks 1000 [--sample 500]   (starts its own HTTPS emulator)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

GRACE_SECONDS = 120.0
TERMINAL = {"completed", "busy", "failed", "no-answer", "canceled"}
REASON = "Orchestration issue: closed stuck voice Task. (baseline loop)"


class RewritingHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """Sends every request to ``base_url`` with the Twilio host it meant as the ``Host`` header
    (like tests/emulator_client.py; the emulator answers only named Twilio hosts), and counts
    them."""

    def __init__(self, base_url: str, *, ca_file: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if ca_file is not None and self.session is not None:
            # An HTTPS emulator's CA. Session.verify alone loses to REQUESTS_CA_BUNDLE, which
            # merge_environment_settings prefers when the caller passes verify=None (twilio does).
            merge = self.session.merge_environment_settings

            def pinned(*args: Any) -> dict[str, Any]:
                return {**merge(*args), "verify": ca_file}

            self.session.merge_environment_settings = pinned  # type: ignore[method-assign]
        target = urlsplit(base_url)
        self._scheme, self._netloc = target.scheme, target.netloc
        self.requests: Counter[str] = Counter()

    def request(
        self, method: str, url: str, *args: Any, headers: Any = None, **kwargs: Any
    ) -> Response:
        parts = urlsplit(url)
        self.requests[_kind(method, parts.path)] += 1
        target = urlunsplit((self._scheme, self._netloc, parts.path, parts.query, parts.fragment))
        headers = {**(headers or {}), "Host": parts.netloc}
        return super().request(method, target, *args, headers=headers, **kwargs)


def _kind(method: str, path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["v1", "Workspaces"] and len(parts) >= 4 and parts[3] == "Tasks":
        if len(parts) == 4:
            return "list_tasks"
        return "update_task" if method == "POST" else "fetch_task"
    if parts[:1] == ["2010-04-01"] and len(parts) == 5:
        return "fetch_call"
    return "other"


def clean_up(
    base_url: str,
    account_sid: str,
    auth_token: str,
    workspace_sid: str,
    *,
    limit: int | None,
    ca_file: str | None = None,
) -> dict[str, Any]:
    """Run the sequential loop over the first ``limit`` open tasks (all when None); ``ca_file``
    is the CA to trust for an HTTPS emulator."""
    http = RewritingHttpClient(base_url, ca_file=ca_file, timeout=30)
    client = Client(account_sid, auth_token, account_sid=account_sid, http_client=http)
    tasks = client.taskrouter.v1.workspaces(workspace_sid).tasks
    calls = client.api.v2010.accounts(account_sid).calls
    started = time.perf_counter()
    examined = closed = 0
    for task in tasks.stream(
        assignment_status=["pending", "reserved", "assigned"], page_size=1000, limit=limit
    ):
        examined += 1
        if task.task_channel_unique_name != "voice":
            continue
        full = tasks(task.sid).fetch()
        try:
            attrs = json.loads(full.attributes)
        except ValueError:
            continue
        call_sid = attrs.get("call_sid") if isinstance(attrs, dict) else None
        if not isinstance(call_sid, str):
            continue
        try:
            call = calls(call_sid).fetch()
        except TwilioRestException as error:
            if error.status == 404:  # a missing call leaves the task alone
                continue
            raise
        ended = call.end_time or call.date_updated  # busy, failed...: no end_time
        if call.status not in TERMINAL or ended is None:
            continue
        if (datetime.now(timezone.utc) - ended).total_seconds() < GRACE_SECONDS:
            continue
        target = "completed" if full.assignment_status == "assigned" else "canceled"
        tasks(task.sid).update(assignment_status=target, reason=REASON)
        closed += 1
    wall = time.perf_counter() - started
    return {
        "wall_seconds": wall,
        "examined": examined,
        "closed": closed,
        "requests": dict(sorted(http.requests.items())),
        "requests_total": sum(http.requests.values()),
    }


def main(argv: list[str] | None = None) -> int:
    import _emu  # bench/ is on sys.path when run as a script

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--sample", type=int, default=None, help="only the first N open tasks")
    p.add_argument("--latency", type=float, default=0.08)
    args = p.parse_args(argv)
    with _emu.emulator(args.tasks, latency=args.latency, concurrency_limit=100) as info:
        job = _emu.job_of(_emu.state(info.base_url, info.ca_file))
        result = clean_up(
            info.base_url,
            info.account_sid,
            info.auth_token,
            info.workspace_sid,
            limit=args.sample,
            ca_file=info.ca_file,
        )
        final = _emu.state(info.base_url, info.ca_file)
        verdict = _emu.check(job, final, expect_all=args.sample is None)
    result["check"] = verdict.text()
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
