"""Blast-radius guards: pure checks on a plan, run after planning and before any write.

A platform-wide outage looks exactly like success: everything seems stuck. These guards refuse
the plans that usually mean something else is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .models import Reason
from .runner import PlanItem

# The share guards need this many call lookups before a share means anything.
MIN_LOOKUPS = 10


@dataclass(frozen=True)
class Limits:
    """The thresholds; each has a flag that raises or disables it."""

    max_changes: int = 1000
    max_lookup_failure_share: float = 0.10
    allow_missing_calls: bool = False
    missing_call_share: float = 0.90


@dataclass(frozen=True)
class Counts:
    """What the guards look at, counted from plan items."""

    to_close: int = 0
    lookups: int = 0
    lookup_failures: int = 0
    not_found: int = 0

    @classmethod
    def of(cls, items: Iterable[PlanItem]) -> Counts:
        to_close = lookups = failures = missing = 0
        for item in items:
            decision = item.decision
            if decision.acts:
                to_close += 1
            if item.call_status is not None or decision.reason in _LOOKUP_REASONS:
                lookups += 1
            if decision.reason is Reason.CALL_LOOKUP_FAILED:
                failures += 1
            elif decision.reason is Reason.CALL_NOT_FOUND:
                missing += 1
        return cls(to_close, lookups, failures, missing)


_LOOKUP_REASONS = frozenset({Reason.CALL_LOOKUP_FAILED, Reason.CALL_NOT_FOUND})


def refusals(counts: Counts, limits: Limits) -> list[str]:
    """Every guard that refuses this plan, each as one line that says how to override it."""
    found: list[str] = []
    if counts.to_close > limits.max_changes:
        found.append(
            f"the plan closes {counts.to_close} tasks, more than --max-changes {limits.max_changes}; "
            f"review it (--dry-run or --save-plan), then re-run with --max-changes {counts.to_close}"
        )
    if counts.lookups >= MIN_LOOKUPS:
        failed = counts.lookup_failures / counts.lookups
        if failed > limits.max_lookup_failure_share:
            found.append(
                f"{counts.lookup_failures} of {counts.lookups} call lookups failed ({failed:.0%}): "
                "the API looks unhealthy and the plan is not trustworthy; wait and re-run, or "
                f"raise --max-lookup-failures (now {limits.max_lookup_failure_share:g})"
            )
        missing = counts.not_found / counts.lookups
        if not limits.allow_missing_calls and missing >= limits.missing_call_share:
            found.append(
                f"{counts.not_found} of {counts.lookups} calls were not found (404, {missing:.0%}): "
                "that usually means credentials for another account or subaccount; check "
                "TWILIO_ACCOUNT_SID, or pass --allow-missing-calls if this is expected"
            )
    return found
