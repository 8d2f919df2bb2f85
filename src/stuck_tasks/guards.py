"""Blast-radius guards: pure checks on a plan, made before any write and while writes go on.

A platform-wide outage looks exactly like success: everything seems stuck. These guards refuse
the plans that usually mean something else is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .models import Case, Reason

# The share guards need this many call lookups before a share means anything.
MIN_LOOKUPS = 10
_LOOKUP_REASONS = frozenset({Reason.CALL_LOOKUP_FAILED, Reason.CALL_NOT_FOUND})


@dataclass(frozen=True)
class Limits:
    """The thresholds; each has a flag that raises or disables it."""

    max_changes: int = 1000
    max_lookup_failure_share: float = 0.10
    allow_missing_calls: bool = False
    missing_call_share: float = 0.90


@dataclass(frozen=True, slots=True)
class Counts:
    """What the guards look at, counted case by case."""

    examined: int = 0
    to_close: int = 0
    lookups: int = 0
    lookup_failures: int = 0
    not_found: int = 0

    def plus(self, case: Case) -> Counts:
        decision = case.decision
        looked = case.call_status is not None or decision.reason in _LOOKUP_REASONS
        return Counts(
            examined=self.examined + 1,
            to_close=self.to_close + decision.acts,
            lookups=self.lookups + looked,
            lookup_failures=self.lookup_failures + (decision.reason is Reason.CALL_LOOKUP_FAILED),
            not_found=self.not_found + (decision.reason is Reason.CALL_NOT_FOUND),
        )

    @classmethod
    def of(cls, cases: Iterable[Case]) -> Counts:
        counts = cls()
        for case in cases:
            counts = counts.plus(case)
        return counts


def refusals(counts: Counts, limits: Limits, *, complete: bool = True) -> list[str]:
    """Every guard that refuses this plan, each one line that says how to override it.

    ``complete``: the counts are the whole plan's; otherwise the numbers are "at least".
    """
    found: list[str] = []
    at_least = "" if complete else "at least "
    if counts.to_close > limits.max_changes:
        advice = (
            f"then re-run with --max-changes {counts.to_close}"
            if complete
            else "then re-run with --max-changes set to the full plan's count"
        )
        found.append(
            f"the plan closes {at_least}{counts.to_close} tasks, more than --max-changes "
            f"{limits.max_changes}; review it (--dry-run or --save-plan), {advice}"
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
