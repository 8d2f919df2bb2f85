"""Data in, text out: audit lines, the summary document (``--json``), the plan and summary text.

The summary is always computed from per-task lines, the same lines the audit log holds, so a
live run and ``--summarize AUDIT_FILE`` cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from .decide import format_age
from .models import Action, Outcome, Reason
from .runner import PlanItem

SCHEMA_VERSION = 1

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def task_line(item: PlanItem, *, at: datetime, dry_run: bool) -> dict[str, Any]:
    """One audit line: the evidence, the verdict, and what happened."""
    task = item.task
    result = item.result
    if item.decision.acts:
        outcome = result.outcome.value if result else Outcome.NOT_ATTEMPTED.value
        why = result.why if result else ("dry-run" if dry_run else "not-applied")
    else:
        outcome, why = "left", item.decision.reason.value
    return {
        "type": "task",
        "time": _iso(at),
        "task_sid": task.sid,
        "status_before": task.status,
        "channel": task.channel,
        "queue": task.queue,
        "age_seconds": task.age,
        "call_sid": task.call_sid,
        "call_status": item.call_status,
        "call_ended_at": _iso(item.call_ended_at),
        "decision": item.decision.action.value,
        "reason": item.decision.reason.value,
        "detail": item.decision.detail,
        "outcome": outcome,
        "why": why,
        "outcome_detail": result.detail if result else None,
        "error_code": result.code if result else None,
        "attempts": result.attempts if result else 0,
        "status_after": result.status_after if result else None,
    }


def summary_document(
    header: Mapping[str, Any],
    lines: Iterable[Mapping[str, Any]],
    *,
    metrics: Mapping[str, Any] | None,
    elapsed: float | None,
    interrupted: bool,
    exit_code: int | None = None,
    audit_log: str | None = None,
    in_flight: Iterable[str] = (),
) -> dict[str, Any]:
    """The ``--json`` document. Keys are stable; README "JSON output" lists them."""
    decisions: Counter[str] = Counter()
    left: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    examined = 0
    wrapups = 0
    for line in lines:
        examined += 1
        decisions[line["decision"]] += 1
        if line["reason"] == Reason.WRAPPING_ABANDONED.value:
            wrapups += 1
        if line["decision"] == Action.LEAVE.value:
            left[line["reason"]] += 1
            continue
        outcomes[line["outcome"]] += 1
        if line["outcome"] == Outcome.SKIPPED.value:
            skipped[line["why"]] += 1
        elif line["outcome"] == Outcome.FAILED.value:
            failed[line["why"]] += 1
    dry_run = bool(header.get("dry_run"))
    to_close = sum(n for action, n in decisions.items() if action != Action.LEAVE.value)
    if exit_code is None:
        exit_code = (
            EXIT_INTERRUPTED if interrupted else EXIT_PARTIAL if outcomes["failed"] else EXIT_OK
        )
    if interrupted:
        status = "interrupted"
    elif dry_run:
        status = "dry-run"
    elif outcomes["failed"]:
        status = "partial"
    elif exit_code == EXIT_FATAL:
        status = "error"
    elif exit_code != EXIT_OK:
        status = "refused"
    else:
        status = "done"
    return {
        "schema_version": SCHEMA_VERSION,
        "tool_version": header.get("tool_version"),
        "run_id": header.get("run_id"),
        "status": status,
        "exit_code": exit_code,
        "dry_run": dry_run,
        "account": {"sid": header.get("account_sid"), "friendly_name": header.get("account_name")},
        "workspace": {
            "sid": header.get("workspace_sid"),
            "friendly_name": header.get("workspace_name"),
        },
        "examined": examined,
        "to_close": {
            "total": to_close,
            "cancel": decisions[Action.CANCEL.value],
            "complete": decisions[Action.COMPLETE.value],
            "close_participant": decisions[Action.CLOSE_PARTICIPANT.value],
            "close_channel": decisions[Action.CLOSE_CHANNEL.value],
            "abandoned_wrapup": wrapups,
        },
        "closed": outcomes[Outcome.CLOSED.value],
        "skipped": {"total": sum(skipped.values()), "by_reason": dict(sorted(skipped.items()))},
        "failed": {"total": sum(failed.values()), "by_reason": dict(sorted(failed.items()))},
        "not_attempted": outcomes[Outcome.NOT_ATTEMPTED.value],
        "left": {"total": sum(left.values()), "by_reason": dict(sorted(left.items()))},
        "updates_in_flight": sorted(in_flight),
        "api": dict(metrics) if metrics is not None else None,
        "elapsed_seconds": round(elapsed, 3) if elapsed is not None else None,
        "audit_log": audit_log,
    }


def _counts(mapping: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(mapping.items(), key=lambda kv: -kv[1]))


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


def _varied(group: list[PlanItem], size: int) -> list[PlanItem]:
    """A sample that shows every kind of action and evidence first, then the rest in order."""
    firsts: dict[tuple[str, str], PlanItem] = {}
    for item in group:
        kind = (item.decision.action.value, (item.call_status or "").split(" ")[0])
        firsts.setdefault(kind, item)
    chosen = list(firsts.values())[:size]
    picked = {id(i) for i in chosen}
    chosen.extend(i for i in group if id(i) not in picked)
    return chosen[:size]


def render_plan(items: list[PlanItem], *, now: datetime, target: str, sample: int = 10) -> str:
    """Where, counts by action and reason, then samples of the tasks to close."""
    acts = [i for i in items if i.decision.acts]
    counts = Counter(i.decision.action.value.replace("-", "_") for i in acts)
    wrapups = [i for i in acts if i.decision.reason is Reason.WRAPPING_ABANDONED]
    left = Counter(i.decision.reason.value for i in items if not i.decision.acts)
    out = [
        f"Plan for {target}: {len(items)} tasks examined",
        f"  to close  {len(acts):>6}  ({_breakdown(counts)})",
    ]
    if wrapups:
        out.append(
            f"            {len(wrapups):>6}  of them abandoned wrap-ups (--include-wrapping)"
        )
    out.append(f"  to leave  {sum(left.values()):>6}")
    out.extend(f"      {n:>6}  {_label(code)}" for code, n in left.most_common())
    stuck = [i for i in acts if i.decision.reason is not Reason.WRAPPING_ABANDONED]
    for title, group in (("tasks to close", stuck), ("abandoned wrap-ups to complete", wrapups)):
        if not group:
            continue
        shown = _varied(group, sample)
        out.append(f"Sample of {title} ({len(shown)} of {len(group)}):")
        out.append(
            f"  {'task':<34}  {'status':<8}  {'age':>7}  {'queue':<16}  {'evidence':<22}  {'ended':>7}  action"
        )
        for item in shown:
            t = item.task
            ended = format_age(now - item.call_ended_at) if item.call_ended_at else "-"
            evidence = item.call_status or item.decision.detail
            out.append(
                f"  {t.sid:<34}  {t.status:<8}  {format_age(t.age):>7}  "
                f"{(t.queue or '-')[:16]:<16}  {evidence[:22]:<22}  "
                f"{ended:>7}  {item.decision.action.value}"
            )
    return "\n".join(out)


def render_summary(doc: Mapping[str, Any]) -> str:
    """The human summary printed on stdout once all work has settled."""
    ws, acct = doc["workspace"], doc["account"]
    title = {
        "dry-run": "Dry run: nothing was changed",
        "done": "Done",
        "partial": "Done, but some tasks failed",
        "interrupted": "Interrupted",
        "refused": "Refused",
        "error": "Stopped by an error",
    }[doc["status"]]
    lines = [
        f"{title}. Run {doc['run_id']}",
        f"  workspace   {ws['friendly_name']} ({ws['sid']}), account {acct['friendly_name']} ({acct['sid']})",
        f"  examined    {doc['examined']:>6}",
        f"  to close    {doc['to_close']['total']:>6}  ({_breakdown(doc['to_close'])})",
    ]
    if not doc["dry_run"]:
        lines.append(f"  closed      {doc['closed']:>6}")
        skipped, failed = doc["skipped"], doc["failed"]
        lines.append(
            f"  skipped     {skipped['total']:>6}"
            + (f"  {_counts(skipped['by_reason'])}" if skipped["total"] else "")
        )
        lines.append(
            f"  failed      {failed['total']:>6}"
            + (f"  {_counts(failed['by_reason'])}" if failed["total"] else "")
        )
        if doc["not_attempted"]:
            lines.append(f"  not tried   {doc['not_attempted']:>6}")
    left = doc["left"]
    lines.append(
        f"  left        {left['total']:>6}"
        + (f"  {_counts(left['by_reason'])}" if left["total"] else "")
    )
    api = doc.get("api")
    if api:
        lines.append(
            f"  requests    {api['requests_total']:>6}  ({_counts(api['requests'])}); "
            f"retries {api['retries']}, 429s {api['throttled_429']}, back-off {api['backoff_seconds']:.1f}s"
        )
    if doc.get("elapsed_seconds") is not None:
        lines.append(f"  elapsed     {doc['elapsed_seconds']:>6.1f}s")
    if doc["updates_in_flight"]:
        lines.append("  updates in flight when aborted (check these tasks):")
        lines.extend(f"    {sid}" for sid in doc["updates_in_flight"])
    if doc.get("audit_log"):
        lines.append(f"  audit log   {doc['audit_log']}")
    return "\n".join(lines)
