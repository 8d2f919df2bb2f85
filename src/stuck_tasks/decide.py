"""The pure decision: which open task to close, and why. No I/O, no clock, no twilio."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

from .models import (
    LIVE_CALL_STATUSES,
    OPEN_STATUSES,
    TERMINAL_CALL_STATUSES,
    VOICE_CHANNEL,
    Action,
    CallFacts,
    CallMissing,
    CallResult,
    Decision,
    Reason,
    TaskRecord,
)

CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")


def read_call_sid(attributes: str | None) -> str | Reason | None:
    """Return the task's ``call_sid``, ``None`` when it has none, or the Reason it cannot be read.

    Attributes are JSON text written by whoever created the task, so every shape is possible.
    """
    if attributes is None or attributes.strip() == "":
        return None
    try:
        parsed = json.loads(attributes)
    except ValueError:  # JSONDecodeError, and also RecursionError-free ValueErrors
        return Reason.ATTRIBUTES_NOT_JSON
    except RecursionError:
        return Reason.ATTRIBUTES_NOT_JSON
    if not isinstance(parsed, dict):
        return Reason.ATTRIBUTES_NOT_OBJECT
    value = parsed.get("call_sid")
    if value is None:
        return None
    if not isinstance(value, str):
        return Reason.CALL_SID_NOT_STRING
    if not CALL_SID.match(value):
        return Reason.CALL_SID_MALFORMED
    return value


def needs_call(task: TaskRecord) -> bool:
    """True when the decision depends on a call lookup."""
    return (
        task.status in OPEN_STATUSES
        and task.channel == VOICE_CHANNEL
        and task.attributes_problem is None
        and task.call_sid is not None
    )


def decide(
    task: TaskRecord, call: CallResult | None, *, now: datetime, grace: timedelta
) -> Decision:
    """Decide one task. Total: every input gets exactly one Decision, and only proof acts.

    :param task: the task, with its attributes already read (``read_call_sid``).
    :param call: the lookup of ``task.call_sid``; ``None`` when it was not looked up.
    :param now: the current time (aware, UTC).
    :param grace: how long a call must have been over before its task is closed.
    """
    if task.status not in OPEN_STATUSES:
        return _leave(Reason.TASK_NOT_OPEN, f"task is {task.status}")
    if task.channel != VOICE_CHANNEL:
        return _leave(Reason.NOT_VOICE, f"channel {task.channel or '(none)'}")
    if not task.attributes_read:
        return _leave(Reason.CALL_NOT_CHECKED, "attributes were not read")
    if task.attributes_problem is not None:
        return _leave(task.attributes_problem, task.attributes_problem.label)
    if task.call_sid is None:
        return _leave(Reason.NO_CALL_SID, "attributes carry no call_sid")
    if call is None:
        return _leave(Reason.CALL_NOT_CHECKED, f"call {task.call_sid} was not looked up")
    if isinstance(call, CallMissing):
        suffix = f" (error {call.code})" if call.code is not None else ""
        return _leave(call.reason, f"call {task.call_sid}: {call.reason.label}{suffix}")
    return _decide_on_call(task.status, call, now=now, grace=grace)


def _decide_on_call(status: str, call: CallFacts, *, now: datetime, grace: timedelta) -> Decision:
    if call.status in LIVE_CALL_STATUSES:
        return _leave(Reason.CALL_LIVE, f"call {call.status}")
    if call.status not in TERMINAL_CALL_STATUSES:
        return _leave(Reason.CALL_STATUS_UNKNOWN, f"call status {call.status!r}")
    ended = call.ended_at
    if ended is None:
        return _leave(Reason.CALL_END_UNKNOWN, f"call {call.status}, no end time")
    since = now - ended
    if since < grace:
        return _leave(Reason.CALL_ENDED_IN_GRACE, f"call {call.status} {format_age(since)} ago")
    action = Action.COMPLETE if status == "assigned" else Action.CANCEL
    return Decision(action, Reason.CALL_ENDED, f"call {call.status} {format_age(since)} ago")


def _leave(reason: Reason, detail: str) -> Decision:
    return Decision(Action.LEAVE, reason, detail)


def format_age(delta: timedelta | float | None) -> str:
    """Short human durations: 45s, 12m, 3h05m, 2d04h."""
    if delta is None:
        return "?"
    seconds = int(delta.total_seconds() if isinstance(delta, timedelta) else delta)
    if seconds < 0:
        return f"-{format_age(-seconds)}"
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h{minutes % 60:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"
