"""Saved plans (``--save-plan`` / ``--apply-plan``): the candidates with their evidence."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .models import Action, Decision, Reason, Refs, TaskRecord
from .runner import PlanItem

KIND = "stuck-tasks-plan"
VERSION = 1


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class SavedPlan:
    run_id: str
    created_at: datetime
    account_sid: str
    workspace_sid: str
    workspace_name: str
    grace_seconds: float
    items: list[PlanItem]


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
        "tasks": [
            {
                "task_sid": i.task.sid,
                "status": i.task.status,
                "channel": i.task.channel,
                "queue": i.task.queue,
                "age_seconds": i.task.age,
                "call_sid": i.task.call_sid,
                "refs": _refs_json(i.task.refs),
                "participant_sid": i.participant_sid,
                "call_status": i.call_status,
                "call_ended_at": _iso(i.call_ended_at),
                "action": i.decision.action.value,
                "reason": i.decision.reason.value,
                "detail": i.decision.detail,
            }
            for i in plan.items
            if i.decision.acts
        ],
    }
    try:
        with path.open("x", encoding="utf-8") as out:
            json.dump(document, out, indent=2, sort_keys=True)
            out.write("\n")
    except FileExistsError:
        raise ConfigError(f"{path} already exists; choose another --save-plan file") from None
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror}") from None


def load(path: Path) -> SavedPlan:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except ValueError:
        raise ConfigError(f"{path} is not a stuck-tasks plan (not JSON)") from None
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise ConfigError(f"{path} is not a stuck-tasks plan")
    if document.get("version") != VERSION:
        raise ConfigError(
            f"{path} is a plan of format {document.get('version')}, expected {VERSION}"
        )
    try:
        items = [_item(entry) for entry in document["tasks"]]
        created = _parse_time(document["created_at"])
        if created is None:
            raise ValueError("created_at")
        return SavedPlan(
            run_id=str(document["run_id"]),
            created_at=created,
            account_sid=str(document["account_sid"]),
            workspace_sid=str(document["workspace_sid"]),
            workspace_name=str(document.get("workspace_name") or ""),
            grace_seconds=float(document["grace_seconds"]),
            items=items,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{path} is a damaged stuck-tasks plan ({error})") from None


def _item(entry: dict[str, Any]) -> PlanItem:
    action = Action(entry["action"])
    if action is Action.LEAVE:
        raise ValueError("a saved plan holds only tasks to close")
    raw = entry.get("refs") or {}
    refs = Refs(
        call_sid=raw.get("call_sid"),
        conference_sid=raw.get("conference_sid"),
        participant_calls=tuple(raw.get("participant_calls") or ()),
        interaction_sid=raw.get("interaction_sid"),
        channel_sid=raw.get("channel_sid"),
        conversation_sid=raw.get("conversation_sid"),
        legacy_chat=bool(raw.get("legacy_chat")),
    )
    record = TaskRecord(
        sid=str(entry["task_sid"]),
        status=str(entry["status"]),
        channel=str(entry["channel"]),
        queue=entry.get("queue"),
        age=entry.get("age_seconds"),
        refs=refs,
    )
    decision = Decision(action, Reason(entry["reason"]), str(entry.get("detail", "")))
    return PlanItem(
        record,
        decision,
        call_status=entry.get("call_status"),
        call_ended_at=_parse_time(entry.get("call_ended_at")),
        participant_sid=entry.get("participant_sid"),
    )


def _refs_json(refs: Refs | None) -> dict[str, Any]:
    if refs is None:
        return {}
    return {
        "call_sid": refs.call_sid,
        "conference_sid": refs.conference_sid,
        "participant_calls": list(refs.participant_calls),
        "interaction_sid": refs.interaction_sid,
        "channel_sid": refs.channel_sid,
        "conversation_sid": refs.conversation_sid,
        "legacy_chat": refs.legacy_chat,
    }


def check_applicable(
    plan: SavedPlan,
    *,
    account_sid: str,
    workspace_sid: str,
    max_age: timedelta,
    now: datetime | None = None,
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
    age = (now or datetime.now(timezone.utc)) - plan.created_at
    if age > max_age:
        raise ConfigError(
            f"the plan is {int(age.total_seconds() // 60)} minutes old, older than --max-plan-age "
            f"{int(max_age.total_seconds() // 60)}m; make a fresh one with --save-plan"
        )
