"""Saved plans (``--save-plan`` / ``--apply-plan``): the tasks to close, with their evidence.

A plan is read strictly: every SID against its pattern, every field's type, timestamps with a
zone and not in the future, no unknown keys, each action consistent with its task. A damaged
or bent plan is refused in one line, so it can only ever touch the tasks of the workspace it
names (a ``task_sid`` of ``../../WS…/Tasks/WT…`` is not a task SID).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .decide import is_sid
from .errors import ConfigError
from .files import create_private
from .models import OPEN_STATUSES, Action, Case, Decision, Reason, Refs, TaskRecord

KIND = "stuck-tasks-plan"
VERSION = 2
MAX_BYTES = 64 * 1024 * 1024
CLOCK_SKEW = timedelta(minutes=1)  # a plan made on another machine may be this far ahead

_TOP = {
    "kind", "version", "run_id", "created_at", "account_sid", "workspace_sid",
    "workspace_name", "grace_seconds", "tasks",
}  # fmt: skip
_TASK = {
    "task_sid", "status", "channel", "queue", "age_seconds", "call_sid", "refs",
    "participant_sid", "call_status", "call_ended_at", "action", "reason", "detail",
}  # fmt: skip
_REFS = {
    "call_sid": "CA", "conference_sid": "CF", "interaction_sid": "KD",
    "channel_sid": "UO", "conversation_sid": "CH",
}  # fmt: skip


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


@dataclass(frozen=True)
class SavedPlan:
    run_id: str
    created_at: datetime
    account_sid: str
    workspace_sid: str
    workspace_name: str
    grace_seconds: float
    cases: tuple[Case, ...]


def save(path: Path, plan: SavedPlan) -> None:
    document = {
        "kind": KIND,
        "version": VERSION,
        "run_id": plan.run_id,
        "created_at": _iso(plan.created_at),
        "account_sid": plan.account_sid,
        "workspace_sid": plan.workspace_sid,
        "workspace_name": plan.workspace_name,
        "grace_seconds": plan.grace_seconds,
        "tasks": [_entry(c) for c in plan.cases if c.decision.acts],
    }
    with create_private(path, "plan file", "--save-plan file") as out:
        try:
            json.dump(document, out, indent=2, sort_keys=True)
            out.write("\n")
        except OSError as error:
            raise ConfigError(f"cannot write {path}: {error.strerror}") from None


def _entry(case: Case) -> dict[str, Any]:
    t, d = case.task, case.decision
    return {
        "task_sid": t.sid,
        "status": t.status,
        "channel": t.channel,
        "queue": t.queue,
        "age_seconds": t.age,
        "call_sid": t.call_sid,
        "refs": (t.refs or Refs()).as_dict(),
        "participant_sid": d.participant_sid,
        "call_status": case.call_status,
        "call_ended_at": _iso(case.ended_at),
        "action": d.action.value,
        "reason": d.reason.value,
        "detail": d.detail,
    }


class _Damaged(Exception):
    pass


def load(path: Path, *, now: datetime | None = None) -> SavedPlan:
    """Read and validate a plan; any damage is one ``ConfigError`` line."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{path} is {size} bytes, too large to be a stuck-tasks plan")
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except (ValueError, RecursionError):
        raise ConfigError(f"{path} is not a stuck-tasks plan (not JSON)") from None
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise ConfigError(f"{path} is not a stuck-tasks plan")
    if document.get("version") != VERSION:
        raise ConfigError(
            f"{path} is a plan of format {document.get('version')!r}, expected {VERSION}; "
            "make a fresh one with --save-plan"
        )
    try:
        return _plan(document, now or datetime.now(UTC))
    except _Damaged as error:
        raise ConfigError(
            f"{path} is a damaged stuck-tasks plan: {error}; nothing was changed"
        ) from None


def _plan(doc: dict[str, Any], now: datetime) -> SavedPlan:
    _only(doc, _TOP, "the plan")
    created = _time(doc.get("created_at"), "created_at", required=True)
    assert created is not None
    if created > now + CLOCK_SKEW:
        raise _Damaged(f"created_at {doc['created_at']} is in the future")
    tasks = doc.get("tasks")
    if not isinstance(tasks, list):
        raise _Damaged("tasks is not a list")
    cases = tuple(_case(entry, i) for i, entry in enumerate(tasks))
    seen: set[str] = set()
    for case in cases:
        if case.sid in seen:
            raise _Damaged(f"task {case.sid} appears twice")
        seen.add(case.sid)
    grace = doc.get("grace_seconds")
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace < 10**9:
        raise _Damaged("grace_seconds is not a number of seconds")
    return SavedPlan(
        run_id=_str(doc, "run_id", "the plan"),
        created_at=created,
        account_sid=_sid_of(doc, "account_sid", "AC", "the plan"),
        workspace_sid=_sid_of(doc, "workspace_sid", "WS", "the plan"),
        workspace_name=_str(doc, "workspace_name", "the plan"),
        grace_seconds=float(grace),
        cases=cases,
    )


def _case(entry: object, index: int) -> Case:
    where = f"task {index + 1}"
    if not isinstance(entry, dict):
        raise _Damaged(f"{where} is not an object")
    _only(entry, _TASK, where)
    sid = _sid_of(entry, "task_sid", "WT", where)
    where = f"task {sid}"
    status = _str(entry, "status", where)
    try:
        action = Action(entry.get("action"))
        reason = Reason(entry.get("reason"))
    except ValueError:
        raise _Damaged(f"{where}: unknown action or reason") from None
    refs = _refs(entry.get("refs"), where)
    participant = entry.get("participant_sid")
    if participant is not None and not is_sid(participant, "UT"):
        raise _Damaged(f"{where}: participant_sid is not a participant SID")
    _consistent(action, status, refs, participant, where)
    call_sid = entry.get("call_sid")
    if call_sid != refs.call_sid:
        raise _Damaged(f"{where}: call_sid does not match its refs")
    age = entry.get("age_seconds")
    if age is not None and (isinstance(age, bool) or not isinstance(age, int) or age < 0):
        raise _Damaged(f"{where}: age_seconds is not a whole number of seconds")
    record = TaskRecord(
        sid=sid,
        status=status,
        channel=_str(entry, "channel", where),
        queue=_opt_str(entry, "queue", where),
        age=age,
        refs=refs,
    )
    decision = Decision(action, reason, _str(entry, "detail", where), participant_sid=participant)
    return Case(
        record,
        decision,
        call_status=_opt_str(entry, "call_status", where),
        ended_at=_time(entry.get("call_ended_at"), f"{where}: call_ended_at", required=False),
    )


def _consistent(action: Action, status: str, refs: Refs, participant: object, where: str) -> None:
    if action is Action.LEAVE:
        raise _Damaged(f"{where}: a plan holds only tasks to close")
    if status not in (*OPEN_STATUSES, "wrapping"):
        raise _Damaged(f"{where}: status {status!r} is not one the tool closes")
    expected = {
        Action.CANCEL: status in ("pending", "reserved"),
        Action.COMPLETE: status in ("assigned", "wrapping"),
        Action.CLOSE_PARTICIPANT: participant is not None and refs.channel_sid is not None,
        Action.CLOSE_CHANNEL: refs.channel_sid is not None and refs.interaction_sid is not None,
    }
    if not expected[action]:
        raise _Damaged(f"{where}: action {action.value} does not fit a task that is {status}")


def _refs(raw: object, where: str) -> Refs:
    if not isinstance(raw, dict):
        raise _Damaged(f"{where}: refs is not an object")
    _only(raw, {*_REFS, "participant_calls", "legacy_chat"}, f"{where} refs")
    values: dict[str, str | None] = {}
    for key, prefix in _REFS.items():
        value = raw.get(key)
        if value is not None and not is_sid(value, prefix):
            raise _Damaged(f"{where}: refs.{key} is not a SID starting {prefix}")
        values[key] = value
    calls = raw.get("participant_calls", [])
    if not isinstance(calls, list) or not all(is_sid(c, "CA") for c in calls):
        raise _Damaged(f"{where}: refs.participant_calls is not a list of call SIDs")
    legacy = raw.get("legacy_chat", False)
    if not isinstance(legacy, bool):
        raise _Damaged(f"{where}: refs.legacy_chat is not true or false")
    return Refs(participant_calls=tuple(calls), legacy_chat=legacy, **values)


def _only(doc: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise _Damaged(f"{where} has unknown field(s) {', '.join(map(repr, unknown[:5]))}")


def _str(doc: dict[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise _Damaged(f"{where}: {key} is not a string")
    return value


def _opt_str(doc: dict[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise _Damaged(f"{where}: {key} is not a string")
    return value


def _sid_of(doc: dict[str, Any], key: str, prefix: str, where: str) -> str:
    value = doc.get(key)
    if not is_sid(value, prefix):
        raise _Damaged(f"{where}: {key} is not a SID starting {prefix}")
    assert isinstance(value, str)
    return value


def _time(value: object, what: str, *, required: bool) -> datetime | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _Damaged(f"{what} is not a timestamp")
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Damaged(f"{what} is not an ISO 8601 timestamp") from None
    if stamp.tzinfo is None:
        raise _Damaged(f"{what} has no time zone")
    return stamp


def check_applicable(
    plan: SavedPlan,
    *,
    account_sid: str,
    workspace_sid: str,
    max_age: timedelta,
    now: Callable[[], datetime] | None = None,
) -> None:
    """Refuse a plan made for another account or workspace, or older than ``max_age``."""
    if plan.account_sid != account_sid:
        raise ConfigError(
            f"the plan was made for account {plan.account_sid}, not {account_sid}; nothing was changed"
        )
    if plan.workspace_sid != workspace_sid:
        raise ConfigError(
            f"the plan was made for workspace {plan.workspace_sid}, not {workspace_sid}; nothing was changed"
        )
    age = (now or (lambda: datetime.now(UTC)))() - plan.created_at
    if age > max_age:
        raise ConfigError(
            f"the plan is {int(age.total_seconds() // 60)} minutes old, older than --max-plan-age "
            f"{int(max_age.total_seconds() // 60)}m; make a fresh one with --save-plan"
        )
