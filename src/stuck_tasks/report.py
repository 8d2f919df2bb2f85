"""Data in, text out: audit lines, the tally and summary document (``--json``), the plan, the
summary, the per-task explanation, and the stderr display (notices, progress).

The summary is always computed from per-task lines, the same lines the audit log holds, so a
live run and ``--summarize AUDIT_FILE`` cannot disagree. Text for a terminal fits its width
(tables shorten columns, lists continue on indented lines); off a terminal lines stay whole.
Everything that came from Twilio is shown with control characters escaped.
"""

from __future__ import annotations

import re
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from .decide import format_age
from .models import (
    Action,
    ApplyResult,
    CallFacts,
    Case,
    ChannelFacts,
    ConferenceFacts,
    Conferences,
    ConversationFacts,
    Missing,
    Outcome,
    Participants,
    Reason,
    Result,
)

SCHEMA_VERSION = 2

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_STUCK_FOUND = 4  # --detailed-exitcode: a dry run found tasks to close
EXIT_INTERRUPTED = 130

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """Escape control characters (and bidi overrides): Twilio data never drives the terminal."""
    return _CONTROL.sub(
        lambda m: (
            f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256 else f"\\u{ord(m.group()):04x}"
        ),
        text,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def utcnow() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------ audit lines and the tally


def task_line(
    case: Case, result: ApplyResult | None, *, at: datetime, dry_run: bool, why_unset: str = ""
) -> dict[str, Any]:
    """One audit line: the evidence, the verdict, and what happened."""
    task = case.task
    decision = case.decision
    if decision.acts:
        if result is not None:
            outcome, why = result.outcome.value, result.why
        else:
            outcome = Outcome.NOT_ATTEMPTED.value
            why = why_unset or ("dry-run" if dry_run else "not-applied")
    else:
        outcome, why = "left", decision.reason.value
    return {
        "type": "task",
        "time": _iso(at),
        "task_sid": task.sid,
        "status_before": task.status,
        "channel": task.channel,
        "queue": task.queue,
        "age_seconds": task.age,
        "call_sid": task.call_sid,
        "call_status": case.call_status,
        "call_ended_at": _iso(case.ended_at),
        "decision": decision.action.value,
        "reason": decision.reason.value,
        "detail": decision.detail,
        "participant_sid": decision.participant_sid,
        "outcome": outcome,
        "why": why,
        "outcome_detail": result.detail if result else None,
        "error_code": result.code if result else None,
        "attempts": result.attempts if result else 0,
        "status_after": result.status_after if result else None,
    }


class Tally:
    """The summary's counts, fed one audit line at a time."""

    def __init__(self) -> None:
        self.examined = 0
        self.decisions: Counter[str] = Counter()
        self.left: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.wrapups = 0
        self.unknown: list[str] = []
        self.closed_sids: list[str] = []

    def add(self, line: Mapping[str, Any]) -> None:
        self.examined += 1
        decision = str(line.get("decision"))
        self.decisions[decision] += 1
        if line.get("reason") == Reason.WRAPPING_ABANDONED.value:
            self.wrapups += 1
        if decision == Action.LEAVE.value:
            self.left[str(line.get("reason"))] += 1
            return
        outcome = str(line.get("outcome"))
        self.outcomes[outcome] += 1
        if outcome == Outcome.SKIPPED.value:
            self.skipped[str(line.get("why"))] += 1
        elif outcome == Outcome.FAILED.value:
            self.failed[str(line.get("why"))] += 1
        elif outcome == Outcome.UNKNOWN.value:
            self.unknown.append(str(line.get("task_sid")))
        elif outcome == Outcome.CLOSED.value:
            self.closed_sids.append(str(line.get("task_sid")))

    @property
    def to_close(self) -> int:
        return sum(n for action, n in self.decisions.items() if action != Action.LEAVE.value)

    @property
    def unsettled(self) -> int:
        """Tasks that failed or whose outcome is unknown: the run is partial."""
        return self.outcomes[Outcome.FAILED.value] + self.outcomes[Outcome.UNKNOWN.value]


def summary_document(
    header: Mapping[str, Any],
    tally: Tally,
    *,
    status: str,
    exit_code: int,
    metrics: Mapping[str, Any] | None,
    elapsed: float | None,
    audit_log: str | None = None,
    in_flight: Iterable[str] = (),
    not_logged: Iterable[str] = (),
    refusals: Sequence[str] = (),
    error: str | None = None,
    tasks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``--json`` document. Keys are stable; README "Output" lists them."""
    d = tally.decisions
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": header.get("tool_version"),
        "run_id": header.get("run_id"),
        "status": status,
        "exit_code": exit_code,
        "dry_run": bool(header.get("dry_run")),
        "account": {"sid": header.get("account_sid"), "friendly_name": header.get("account_name")},
        "workspace": {
            "sid": header.get("workspace_sid"),
            "friendly_name": header.get("workspace_name"),
        },
        "connection": {
            "credentials": header.get("credentials"),
            "base_url": header.get("base_url"),
        },
        "examined": tally.examined,
        "to_close": {
            "total": tally.to_close,
            "cancel": d[Action.CANCEL.value],
            "complete": d[Action.COMPLETE.value],
            "close_participant": d[Action.CLOSE_PARTICIPANT.value],
            "close_channel": d[Action.CLOSE_CHANNEL.value],
            "abandoned_wrapup": tally.wrapups,
        },
        "closed": tally.outcomes[Outcome.CLOSED.value],
        "skipped": _by(tally.skipped),
        "failed": _by(tally.failed),
        "unknown": {"total": len(tally.unknown), "tasks": sorted(tally.unknown)},
        "not_attempted": tally.outcomes[Outcome.NOT_ATTEMPTED.value],
        "left": _by(tally.left),
        "updates_in_flight": sorted(in_flight),
        "not_in_audit_log": sorted(not_logged),
        "guards": {"refusals": list(refusals)},
        "error": error,
        "api": dict(metrics) if metrics is not None else None,
        "elapsed_seconds": round(elapsed, 3) if elapsed is not None else None,
        "audit_log": audit_log,
        "tasks": tasks,
    }


def _by(counts: Counter[str]) -> dict[str, Any]:
    return {"total": sum(counts.values()), "by_reason": dict(sorted(counts.items()))}


# ------------------------------------------------------------------ per-task data


def describe_result(result: Result) -> str:
    """One lookup's answer, in words."""
    if isinstance(result, Missing):
        code = f" (error {result.code})" if result.code is not None else ""
        return f"{result.reason.label}{code}"
    if isinstance(result, CallFacts):
        ended = (
            f", ended {_iso(result.ended_at)}"
            if result.ended_at and result.status != "in-progress"
            else ""
        )
        return f"{result.status}{ended}"
    if isinstance(result, ConferenceFacts):
        ended = f", ended {_iso(result.date_updated)}" if result.status == "completed" else ""
        return f"{result.status}{ended}"
    if isinstance(result, Conferences):
        if not result.found:
            return "none"
        return "; ".join(f"{c.sid} {describe_result(c)}" for c in result.found)
    if isinstance(result, ChannelFacts):
        return result.status
    if isinstance(result, Participants):
        return ", ".join(f"{p.kind} {p.sid}" for p in result.found) or "none"
    if isinstance(result, ConversationFacts):
        closed = f", closed {_iso(result.date_updated)}" if result.state == "closed" else ""
        return f"{result.state}{closed}"
    return "?"


def _lookup_name(kind: str, sid: str, status: str) -> str:
    names = {
        "call": f"call {sid}",
        "conference": f"conference {sid}",
        "conferences-named": f"conferences named {sid} ({status})",
        "channel": f"interaction channel {sid}",
        "participants": f"participants of channel {sid}",
        "conversation": f"conversation {sid}",
    }
    return names.get(kind, f"{kind} {sid}")


def case_data(case: Case, result: ApplyResult | None = None) -> dict[str, Any]:
    """A task, its evidence, the verdict and (when applied) what happened: for ``--json``."""
    refs = case.task.refs
    return {
        "task_sid": case.sid,
        "status": case.task.status,
        "channel": case.task.channel,
        "queue": case.task.queue,
        "age_seconds": case.task.age,
        "attributes_name": (
            {k: v for k, v in refs.as_dict().items() if k != "legacy_chat"}
            if refs is not None
            else None
        ),
        "evidence": [
            {
                "lookup": _lookup_name(lk.kind.value, lk.sid, lk.status),
                "answer": describe_result(found),
            }
            for lk, found in case.evidence.answers
        ],
        "action": case.decision.action.value,
        "reason": case.decision.reason.value,
        "detail": case.decision.detail,
        "outcome": result.outcome.value if result else None,
        "outcome_detail": result.detail if result else None,
    }


def render_explain(
    cases: Sequence[Case], results: Mapping[str, ApplyResult], *, width: int | None
) -> str:
    """``--task``: one block per task, the article's manual procedure written out."""
    blocks = []
    for case in cases:
        d = case_data(case, results.get(case.sid))
        lines = [f"Task {d['task_sid']}"]
        lines.append(
            f"  status      {d['status']}, channel {d['channel'] or '-'}, queue {d['queue'] or '-'}"
        )
        names = d["attributes_name"]
        if names is None:
            problem = case.task.attributes_problem
            lines.append(f"  attributes  {problem.label if problem else 'not read'}")
        else:
            named = [f"{k} {v}" for k, v in names.items() if v]
            lines.append(
                f"  attributes  name {', '.join(named) if named else 'no call, conference or interaction'}"
            )
        for item in d["evidence"]:
            lines.append(f"  looked up   {item['lookup']}: {item['answer']}")
        verdict = {
            "leave": "leave it",
            "cancel": "cancel it",
            "complete": "complete it",
            "close-participant": "close its agent's participant",
            "close-channel": "close its interaction channel",
        }[d["action"]]
        lines.append(f"  verdict     {verdict} ({d['reason']}): {d['detail']}")
        if d["outcome"] is not None:
            lines.append(f"  applied     {d['outcome']}: {d['outcome_detail']}")
        blocks.append("\n".join(_fit_block(lines, width)))
    return "\n\n".join(blocks)


# ------------------------------------------------------------------ plan and summary text


def _counts(mapping: Mapping[str, int]) -> list[str]:
    return [f"{k} {v}" for k, v in sorted(mapping.items(), key=lambda kv: (-kv[1], kv[0]))]


def _label(code: str) -> str:
    try:
        return Reason(code).label
    except ValueError:
        return code


def _breakdown(counts: Mapping[str, int]) -> str:
    names = (
        ("cancel", "cancel"),
        ("complete", "complete"),
        ("close_participant", "close agent participant"),
        ("close_channel", "close channel"),
    )
    parts = [f"{label} {counts[key]}" for key, label in names if counts.get(key)]
    return ", ".join(parts) or "none"


def _varied(group: Sequence[Case], size: int) -> list[Case]:
    """A sample that shows every kind of action and evidence first, then the rest in order."""
    firsts: dict[tuple[str, str], Case] = {}
    for case in group:
        kind = (case.decision.action.value, (case.call_status or "").split(" ")[0])
        firsts.setdefault(kind, case)
    chosen = list(firsts.values())[:size]
    picked = {c.sid for c in chosen}
    chosen.extend(c for c in group if c.sid not in picked)
    return chosen[:size]


def _listed(label: str, items: Sequence[str], width: int | None, indent: int) -> list[str]:
    """``label  a, b, c`` continued on indented lines so no line is wider than ``width``."""
    if not items:
        return [label.rstrip()]
    if width is None:
        return [f"{label}{', '.join(items)}"]
    lines: list[str] = []
    current = label
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        if len(current) + len(piece) + 1 > width and current.strip():
            lines.append(current.rstrip())
            current = " " * indent
        current += piece + " "
    lines.append(current.rstrip())
    return [_fit(line, width) for line in lines]


def _wrapped(prefix: str, text: str, width: int | None, indent: int) -> list[str]:
    """``prefix text`` as words continued on indented lines within ``width``."""
    if width is None:
        return [prefix + text]
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=prefix,
        subsequent_indent=" " * indent,
        break_long_words=True,
        break_on_hyphens=False,
    )


def _fit(line: str, width: int | None) -> str:
    if width is None or len(line) <= width:
        return line
    return line[: max(1, width - 1)] + "…"


def _fit_block(lines: Iterable[str], width: int | None) -> list[str]:
    return [_fit(clean(line), width) for line in lines]


@dataclass(frozen=True)
class Target:
    """Where a run acts, for headers: names and SIDs, the credential's source, the base URL."""

    workspace_sid: str
    workspace_name: str
    account_sid: str
    account_name: str | None
    credentials: str
    base_url: str | None = None

    def lines(self, width: int | None = None) -> list[str]:
        account = (
            f"{self.account_name} ({self.account_sid})" if self.account_name else self.account_sid
        )
        rows = [
            ("workspace", f"{self.workspace_name} ({self.workspace_sid})"),
            ("account", account),
            ("credentials", self.credentials),
        ]
        if self.base_url:
            rows.append(("base URL", f"{self.base_url} (not twilio.com)"))
        out: list[str] = []
        for label, value in rows:
            out.extend(_wrapped(f"  {label:<11}  ", clean(value), width, 15))
        return out


_COLUMNS = ("task", "status", "age", "queue", "evidence", "ended", "action")
# Dropped in this order when the table is wider than the terminal.
_DROP_ORDER = ("queue", "age", "ended", "status")


def _sample_table(cases: Sequence[Case], *, now: datetime, width: int | None) -> list[str]:
    rows = []
    for case in cases:
        t = case.task
        rows.append(
            {
                "task": t.sid,
                "status": t.status,
                "age": format_age(t.age),
                "queue": t.queue or "-",
                "evidence": case.call_status or case.decision.detail,
                "ended": format_age(now - case.ended_at) if case.ended_at else "-",
                "action": case.decision.action.value,
            }
        )
    widest = {c: max([len(c)] + [len(clean(r[c])) for r in rows]) for c in _COLUMNS}
    limits = {"queue": 16, "evidence": 24}
    widths = {c: min(widest[c], limits.get(c, widest[c])) for c in _COLUMNS}
    columns = list(_COLUMNS)

    def total() -> int:
        return 2 + sum(widths[c] for c in columns) + 2 * (len(columns) - 1)

    if width is not None:
        for name in _DROP_ORDER:
            if total() <= width:
                break
            columns.remove(name)
        if total() > width:
            widths["evidence"] = max(8, widths["evidence"] - (total() - width))
    right = {"age", "ended"}

    def cell(c: str, value: str) -> str:
        value = clean(value)
        if len(value) > widths[c]:
            value = value[: widths[c] - 1] + "…"
        return value.rjust(widths[c]) if c in right else value.ljust(widths[c])

    out = ["  " + "  ".join(cell(c, c) for c in columns).rstrip()]
    out += ["  " + "  ".join(cell(c, r[c]) for c in columns).rstrip() for r in rows]
    return [_fit(line, width) for line in out]


def render_plan(
    cases: Sequence[Case],
    *,
    now: datetime,
    target: Target,
    width: int | None,
    refusals: Sequence[str] = (),
    sample: int = 10,
) -> str:
    """Where, counts by action and reason, then samples of the tasks to close."""
    acts = [c for c in cases if c.decision.acts]
    counts = Counter(c.decision.action.value.replace("-", "_") for c in acts)
    wrapups = [c for c in acts if c.decision.reason is Reason.WRAPPING_ABANDONED]
    left = Counter(c.decision.reason.value for c in cases if not c.decision.acts)
    out = [f"Plan: {len(cases)} tasks examined", *target.lines(width)]
    out.append(f"  to close  {len(acts):>6}  ({_breakdown(counts)})")
    if wrapups:
        out.append(
            f"            {len(wrapups):>6}  of them abandoned wrap-ups (--include-wrapping)"
        )
    out.append(f"  to leave  {sum(left.values()):>6}")
    out.extend(f"      {n:>6}  {_label(code)}" for code, n in left.most_common())
    stuck = [c for c in acts if c.decision.reason is not Reason.WRAPPING_ABANDONED]
    for title, group in (("tasks to close", stuck), ("abandoned wrap-ups to complete", wrapups)):
        if not group:
            continue
        shown = _varied(group, sample)
        out.append(f"Sample of {title} ({len(shown)} of {len(group)}):")
        out.extend(_sample_table(shown, now=now, width=width))
    for refusal in refusals:
        out.extend(_wrapped("Guard: a real run would refuse: ", refusal, width, 7))
    return "\n".join(_fit_block(out, width))


_TITLES = {
    "dry-run": "Dry run: nothing was changed",
    "done": "Done",
    "partial": "Done, but some tasks were not settled",
    "interrupted": "Interrupted",
    "refused": "Refused",
    "error": "Stopped by an error",
    "declined": "Declined: nothing was changed",
}


def render_summary(doc: Mapping[str, Any], *, width: int | None = None) -> str:
    """The human summary printed on stdout once all work has settled."""
    ws, acct = doc["workspace"], doc["account"]
    account = (
        f"{acct['friendly_name']} ({acct['sid']})" if acct.get("friendly_name") else acct["sid"]
    )
    lines = [
        f"{_TITLES[doc['status']]}. Run {doc['run_id']}",
        f"  workspace   {ws['friendly_name']} ({ws['sid']})",
        f"  account     {account}",
        f"  examined    {doc['examined']:>6}",
        f"  to close    {doc['to_close']['total']:>6}  ({_breakdown(doc['to_close'])})",
    ]
    if not doc["dry_run"]:
        lines.append(f"  closed      {doc['closed']:>6}")
        for key, label in (("skipped", "skipped"), ("failed", "failed")):
            part = doc[key]
            lines.extend(
                _listed(
                    f"  {label:<10}  {part['total']:>6}  ", _counts(part["by_reason"]), width, 22
                )
            )
        if doc["unknown"]["total"]:
            lines.append(
                f"  unknown     {doc['unknown']['total']:>6}  (a write was sent; check these tasks)"
            )
            lines.extend(f"    {sid}" for sid in doc["unknown"]["tasks"])
        if doc["not_attempted"]:
            lines.append(f"  not tried   {doc['not_attempted']:>6}")
    left = doc["left"]
    lines.extend(
        _listed(f"  left        {left['total']:>6}  ", _counts(left["by_reason"]), width, 22)
    )
    api = doc.get("api")
    if api:
        lines.extend(
            _listed(
                f"  requests    {api['requests_total']:>6}  ",
                _counts(api["requests"]),
                width,
                22,
            )
        )
        lines.append(
            f"              retries {api['retries']}, 429s {api['throttled_429']}, "
            f"back-off {api['backoff_seconds']:.1f}s, paced {api.get('paced_seconds', 0):.1f}s"
        )
    if doc.get("elapsed_seconds") is not None:
        lines.append(f"  elapsed     {doc['elapsed_seconds']:>6.1f}s")
    if doc["updates_in_flight"]:
        lines.append("  updates in flight when aborted (check these tasks):")
        lines.extend(f"    {sid}" for sid in doc["updates_in_flight"])
    if doc.get("not_in_audit_log"):
        lines.append("  closed, but NOT in the audit log (it could not be written):")
        lines.extend(f"    {sid}" for sid in doc["not_in_audit_log"])
    for refusal in doc["guards"]["refusals"]:
        prefix = "  guard (a real run would refuse): " if doc["dry_run"] else "  refused: "
        lines.extend(_wrapped(prefix, refusal, width, 4))
    if doc.get("audit_log"):
        lines.append(f"  audit log   {doc['audit_log']}")
    return "\n".join(_fit_block(lines, width))


# ------------------------------------------------------------------ the stderr display


@dataclass(frozen=True)
class Progress:
    """A snapshot of the run for the progress line."""

    phase: str
    listed: int
    listing_done: bool
    examined: int
    to_close: int
    settled: int
    closed: int
    requests: int
    throttled: int
    waited: float
    active: float  # seconds of work so far (time at the prompt excluded)


def progress_line(p: Progress, width: int | None = None) -> str:
    """The progress line; at ``width`` the parts that do not fit are left out, the least
    telling first (the rate, then the 429s), rather than cutting one in half."""
    phase = p.phase
    if phase == "closing" and p.listing_done and p.examined < p.listed:
        phase = "examining and closing"  # a --yes run closes while the rest is examined
    parts = [f"{phase}: listed {p.listed}{'' if p.listing_done else '+'}", f"examined {p.examined}"]
    if p.to_close:
        parts.append(f"to close {p.to_close}")
    if p.settled:
        parts.append(f"closed {p.closed}")
    line = ", ".join(parts)
    extras: list[str] = []
    if p.listing_done and p.active > 1:
        done = p.examined + p.settled
        remaining = max(0, p.listed - p.examined) + max(0, p.to_close - p.settled)
        if done and remaining:
            extras.append(f"ETA {format_age(max(0.0, remaining * p.active / done))}")
    if p.throttled:
        extras.append(f"429s {p.throttled}, waited {p.waited:.0f}s")
    rate = p.requests / p.active if p.active > 0.5 else 0.0
    extras.append(f"{rate:.0f} req/s")
    for extra in extras:
        if width is None or len(line) + 3 + len(extra) <= width:
            line += f" | {extra}"
    return line


class Display:
    """Talks to the person on stderr: notices, the plan, the progress line.

    On a terminal the progress line redraws in place, cut to the terminal's width; off one, a
    whole line every five seconds. A closed stream (the terminal went away) is ignored.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        quiet: bool,
        tty: bool,
        width: int | None,
        every: float = 5.0,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = tty
        self.width = width if tty else None
        self._every = every
        self._last_plain = time.monotonic()  # off a terminal, the first line comes after ``every``
        self._drawn = False
        self._broken = False

    def _write(self, text: str) -> None:
        if self._broken:
            return
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            self._broken = True  # a closed pipe or a lost terminal never changes the outcome

    def notice(self, text: str) -> None:
        if self.quiet:
            return
        self.clear()
        lines: list[str] = []
        for line in clean(text).split("\n"):
            lines.extend(_wrapped("", line, self.width, 2) or [""])
        self._write("\n".join(lines) + "\n")

    def show(self, text: str) -> None:
        """Text already fitted (a plan): shown unless quiet."""
        if self.quiet:
            return
        self.clear()
        self._write(text + "\n")

    def progress(self, snapshot: Progress, *, now: float) -> None:
        if self.quiet or snapshot.phase == "connecting":
            return
        if self.tty:
            width = (self.width or 80) - 1
            self._write("\r\033[K" + _fit(progress_line(snapshot, width), width))
            self._drawn = True
        elif now - self._last_plain >= self._every:
            self._last_plain = now
            self._write(progress_line(snapshot) + "\n")

    def clear(self) -> None:
        if self._drawn:
            self._write("\r\033[K")
            self._drawn = False
