"""The JSON Lines audit log, and the run's one sink.

The log: a header, one line per examined task as it settles, a footer. It is created private
(0600) and never overwritten; each line is flushed as it is written, so an interrupted run leaves
a valid partial log.

``Recorder`` is the sink every pipeline stage reports to: it writes each task's line to the log,
adds it to the tally the summary is computed from, and keeps the counters the progress line
shows. When the log cannot be written (disk full, I/O error) it says so once, by raising
``AuditFailed`` (the pipeline then stops every further write), and from then on keeps the
closes that are not in the log so the printed summary can list them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from .errors import AuditFailed, ConfigError
from .files import create_private
from .models import ApplyResult, Case, Outcome
from .report import Progress, Tally, task_line, utcnow

# json.dumps(line, sort_keys=True, default=str), without building an encoder for every line.
_encode = json.JSONEncoder(sort_keys=True, default=str).encode


class AuditLog:
    """Append-only, flushed line by line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = create_private(path, "audit log", "--audit-log")
        self.failed: str | None = None

    def write(self, line: dict[str, Any]) -> None:
        if self._file is None:
            raise AuditFailed(f"the audit log {self.path} cannot be written: {self.failed}")
        try:
            self._file.write(_encode(line) + "\n")
            self._file.flush()
        except OSError as error:
            self.failed = error.strerror or type(error).__name__
            self._drop()
            raise AuditFailed(
                f"the audit log {self.path} could not be written ({self.failed}): "
                "no further write was started"
            ) from None

    def _drop(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def close(self) -> None:
        self._drop()


class Recorder:
    """The one sink: audit log lines, the tally, and the progress counters."""

    def __init__(
        self,
        log: AuditLog | None,
        *,
        dry_run: bool,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.log = log
        self.tally = Tally()
        self.not_logged: list[str] = []
        self._dry_run = dry_run
        self._now = now
        self._failed = False
        self._phase = "connecting"
        self._listed = 0
        self._examined = 0
        self._to_close = 0
        self._settled = 0
        self._closed = 0
        self._listing_done = False

    # ------------------------------------------------------------ what the stages report

    def phase(self, name: str) -> None:
        self._phase = name
        self._listing_done = name not in ("connecting", "listing")

    def planned(self, count: int) -> None:
        """A saved plan's tasks, to close in this run."""
        self._to_close += count

    def listed(self) -> None:
        self._listed += 1

    def decided(self, case: Case) -> None:
        self._examined += 1
        if case.decision.acts:
            self._to_close += 1
        else:
            self._line(case, None)

    def settled(self, case: Case, result: ApplyResult) -> None:
        self._settled += 1
        self._closed += result.outcome is Outcome.CLOSED
        self._line(case, result)

    def unsettled(self, cases: Iterable[Case], *, why: str) -> None:
        """Planned tasks that got no result (declined, refused, interrupted): one line each."""
        for case in cases:
            self._line(case, None, why_unset=why)

    def write(self, line: dict[str, Any]) -> None:
        """A header or footer line."""
        if self.log is not None and not self._failed:
            try:
                self.log.write(line)
            except AuditFailed:
                self._failed = True
                raise

    def _line(self, case: Case, result: ApplyResult | None, *, why_unset: str = "") -> None:
        line = task_line(case, result, at=self._now(), dry_run=self._dry_run, why_unset=why_unset)
        self.tally.add(line)
        if self.log is None:
            return
        if self._failed:
            self._missed(result, case)
            return
        try:
            self.log.write(line)
        except AuditFailed:
            self._failed = True
            self._missed(result, case)
            raise

    def _missed(self, result: ApplyResult | None, case: Case) -> None:
        if result is not None and result.outcome in (Outcome.CLOSED, Outcome.UNKNOWN):
            self.not_logged.append(case.sid)

    # ------------------------------------------------------------ what the display reads

    def snapshot(self, *, requests: int, throttled: int, waited: float, active: float) -> Progress:
        return Progress(
            phase=self._phase,
            listed=self._listed,
            listing_done=self._listing_done,
            examined=self._examined,
            to_close=self._to_close,
            settled=self._settled,
            closed=self._closed,
            requests=requests,
            throttled=throttled,
            waited=waited,
            active=active,
        )

    @property
    def audit_failed(self) -> bool:
        return self._failed


def read_audit(
    path: Path,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None, bool]:
    """Read an audit log back: (header, task lines, footer or None, whether its tail was cut).

    A last line cut off half-way (the disk filled, the process was killed) is skipped and
    reported; a damaged line anywhere else is an error.
    """
    header: dict[str, Any] | None = None
    footer: dict[str, Any] | None = None
    tasks: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    raw_lines = text.split("\n")
    cut = False
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        last = number == len(raw_lines)  # no newline after it: written half-way
        try:
            line = json.loads(raw)
        except (ValueError, RecursionError):
            if last:
                cut = True
                continue
            raise ConfigError(
                f"{path}:{number}: not a JSON line; is this a stuck-tasks audit log?"
            ) from None
        kind = line.get("type") if isinstance(line, dict) else None
        if kind == "header":
            header = line
        elif kind == "task":
            tasks.append(line)
        elif kind == "footer":
            footer = line
        else:
            raise ConfigError(
                f"{path}:{number}: unknown line type; is this a stuck-tasks audit log?"
            )
    if header is None:
        raise ConfigError(f"{path} has no header line; is this a stuck-tasks audit log?")
    return header, tasks, footer, cut
