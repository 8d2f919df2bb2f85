"""Small, frozen records passed between the layers. No I/O, no twilio types."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

OPEN_STATUSES = ("pending", "reserved", "assigned")
TERMINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
LIVE_CALL_STATUSES = frozenset({"queued", "ringing", "in-progress"})
VOICE_CHANNEL = "voice"


class Action(enum.Enum):
    """What the tool does with one task."""

    CANCEL = "cancel"
    COMPLETE = "complete"
    LEAVE = "leave"

    @property
    def target_status(self) -> str:
        """The ``AssignmentStatus`` this action writes."""
        if self is Action.CANCEL:
            return "canceled"
        if self is Action.COMPLETE:
            return "completed"
        raise ValueError("LEAVE writes nothing")


class Reason(enum.Enum):
    """Why a task gets its action. Values are stable codes used in JSON and audit logs."""

    CALL_ENDED = "call-ended"
    TASK_NOT_OPEN = "task-not-open"
    TASK_NOT_FOUND = "task-not-found"
    TASK_FETCH_FAILED = "task-fetch-failed"
    NOT_VOICE = "not-voice"
    ATTRIBUTES_NOT_JSON = "attributes-not-json"
    ATTRIBUTES_NOT_OBJECT = "attributes-not-object"
    CALL_SID_NOT_STRING = "call-sid-not-string"
    CALL_SID_MALFORMED = "call-sid-malformed"
    NO_CALL_SID = "no-call-sid"
    CALL_NOT_CHECKED = "call-not-checked"
    CALL_NOT_FOUND = "call-not-found"
    CALL_LOOKUP_FAILED = "call-lookup-failed"
    CALL_LIVE = "call-live"
    CALL_STATUS_UNKNOWN = "call-status-unknown"
    CALL_END_UNKNOWN = "call-end-unknown"
    CALL_ENDED_IN_GRACE = "call-ended-in-grace"

    @property
    def label(self) -> str:
        return _REASON_LABELS[self]


_REASON_LABELS = {
    Reason.CALL_ENDED: "call ended",
    Reason.TASK_NOT_OPEN: "task is not pending, reserved or assigned",
    Reason.TASK_NOT_FOUND: "task not found",
    Reason.TASK_FETCH_FAILED: "task could not be read",
    Reason.NOT_VOICE: "not a voice task",
    Reason.ATTRIBUTES_NOT_JSON: "attributes are not valid JSON",
    Reason.ATTRIBUTES_NOT_OBJECT: "attributes are not a JSON object",
    Reason.CALL_SID_NOT_STRING: "call_sid is not a string",
    Reason.CALL_SID_MALFORMED: "call_sid is not a call SID",
    Reason.NO_CALL_SID: "no call_sid",
    Reason.CALL_NOT_CHECKED: "call not checked",
    Reason.CALL_NOT_FOUND: "call not found (404: unknown is not proof)",
    Reason.CALL_LOOKUP_FAILED: "call lookup failed",
    Reason.CALL_LIVE: "call still live",
    Reason.CALL_STATUS_UNKNOWN: "call status not recognised",
    Reason.CALL_END_UNKNOWN: "call end time unknown",
    Reason.CALL_ENDED_IN_GRACE: "call ended within the grace period",
}


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """What the tool keeps of one task: a few fields, never the raw JSON."""

    sid: str
    status: str
    channel: str
    queue: str | None = None
    date_created: datetime | None = None
    date_updated: datetime | None = None
    age: int | None = None
    # Filled in once the attributes have been read (from a fetch, or from the list
    # when Twilio included them there): the call SID, or why there is none.
    attributes_read: bool = False
    call_sid: str | None = None
    attributes_problem: Reason | None = None
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class CallFacts:
    """The evidence a call gives."""

    sid: str
    status: str
    end_time: datetime | None
    date_updated: datetime | None

    @property
    def ended_at(self) -> datetime | None:
        """``end_time``, else ``date_updated`` (end_time is empty for unanswered calls)."""
        return self.end_time or self.date_updated


@dataclass(frozen=True, slots=True)
class CallMissing:
    """A call lookup that gave no evidence."""

    reason: Reason  # CALL_NOT_FOUND or CALL_LOOKUP_FAILED
    code: int | None = None


CallResult = CallFacts | CallMissing


@dataclass(frozen=True, slots=True)
class Decision:
    """One verdict for one task, with a human detail line."""

    action: Action
    reason: Reason
    detail: str

    @property
    def acts(self) -> bool:
        return self.action is not Action.LEAVE


class Outcome(enum.Enum):
    """What happened when the tool tried to act on a planned task."""

    CLOSED = "closed"
    SKIPPED = "skipped"
    FAILED = "failed"
    NOT_ATTEMPTED = "not-attempted"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The settled result of one planned write."""

    outcome: Outcome
    why: str  # a stable code: "closed", "changed-412", "moved-to-wrapping", "error-20001", ...
    detail: str
    status_after: str | None = None
    code: int | None = None
    attempts: int = 0
