"""The ``--json`` envelope and the audit line are contracts: their keys are pinned here.

A change to either is a change for every script that reads them (README "Output"); bump
``SCHEMA_VERSION`` and this test together.
"""

from __future__ import annotations

from datetime import timedelta

from fakes import NOW, voice_task
from stuck_tasks.models import Action, ApplyResult, Case, Decision, Outcome, Reason
from stuck_tasks.report import SCHEMA_VERSION, Tally, render_summary, summary_document, task_line

DOCUMENT_KEYS = {
    "schema_version", "tool_version", "run_id", "status", "exit_code", "dry_run", "account",
    "workspace", "connection", "examined", "to_close", "closed", "skipped", "failed", "unknown",
    "not_attempted", "left", "updates_in_flight", "not_in_audit_log", "guards", "error", "api",
    "elapsed_seconds", "audit_log", "tasks",
}  # fmt: skip
LINE_KEYS = {
    "type", "time", "task_sid", "status_before", "channel", "queue", "age_seconds", "call_sid",
    "call_status", "call_ended_at", "decision", "reason", "detail", "participant_sid", "outcome",
    "why", "outcome_detail", "error_code", "attempts", "status_after",
}  # fmt: skip
STATUSES = ("done", "partial", "dry-run", "refused", "error", "interrupted", "declined")


def lines() -> list[dict]:
    closing = Case(voice_task(1), Decision(Action.CANCEL, Reason.CALL_ENDED, "call ended"))
    left = Case(voice_task(2), Decision(Action.LEAVE, Reason.CALL_LIVE, "call live"))
    unknown = Case(voice_task(3), Decision(Action.CANCEL, Reason.CALL_ENDED, "call ended"))
    closed = ApplyResult(Outcome.CLOSED, "closed", "pending -> canceled", "canceled", None, 1)
    lost = ApplyResult(Outcome.UNKNOWN, "unknown-outcome", "sent, not read back", attempts=2)
    return [
        task_line(closing, closed, at=NOW, dry_run=False),
        task_line(left, None, at=NOW, dry_run=False),
        task_line(unknown, lost, at=NOW + timedelta(seconds=1), dry_run=False),
    ]


def document(status: str = "partial") -> dict:
    tally = Tally()
    for line in lines():
        tally.add(line)
    header = {"run_id": "R", "tool_version": "0", "account_sid": "AC1", "workspace_sid": "WS1"}
    return summary_document(header, tally, status=status, exit_code=3, metrics=None, elapsed=1.0)


def test_the_json_document_keys_are_pinned():
    doc = document()
    assert set(doc) == DOCUMENT_KEYS
    assert doc["schema_version"] == SCHEMA_VERSION == 2
    assert set(doc["to_close"]) == {
        "total", "cancel", "complete", "close_participant", "close_channel", "abandoned_wrapup",
    }  # fmt: skip
    for key in ("skipped", "failed", "left"):
        assert set(doc[key]) == {"total", "by_reason"}
    assert set(doc["unknown"]) == {"total", "tasks"}
    assert set(doc["guards"]) == {"refusals"}
    assert set(doc["connection"]) == {"credentials", "base_url"}


def test_the_audit_line_keys_are_pinned():
    for line in lines():
        assert set(line) == LINE_KEYS


def test_the_counts_come_from_the_lines():
    doc = document()
    assert (doc["examined"], doc["closed"], doc["unknown"]["total"]) == (3, 1, 1)
    assert doc["to_close"]["total"] == 2
    assert doc["left"]["by_reason"] == {"call-live": 1}


def test_every_status_renders():
    for status in STATUSES:
        assert render_summary(document(status)).startswith(
            ("Done", "Dry run", "Refused", "Stopped", "Interrupted", "Declined")
        )
