"""Records of the emulated world and the frozen views handed out to callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

TASK_STATUSES: tuple[str, ...] = (
    "pending",
    "reserved",
    "assigned",
    "canceled",
    "completed",
    "wrapping",
)
OPEN_TASK_STATUSES = frozenset({"pending", "reserved", "assigned", "wrapping"})
CLOSED_TASK_STATUSES = frozenset({"canceled", "completed"})
CALL_STATUSES: tuple[str, ...] = (
    "queued",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "failed",
    "no-answer",
    "canceled",
)
LIVE_CALL_STATUSES = frozenset({"queued", "ringing", "in-progress"})
TERMINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


@dataclass(frozen=True)
class Account:
    sid: str
    auth_token: str = field(repr=False)
    friendly_name: str
    date_created: datetime


@dataclass(frozen=True)
class ApiKey:
    sid: str
    secret: str = field(repr=False)
    account_sid: str
    friendly_name: str


@dataclass(frozen=True)
class Workspace:
    sid: str
    account_sid: str
    friendly_name: str
    date_created: datetime
    default_activity_sid: str
    timeout_activity_sid: str


@dataclass(frozen=True)
class Change:
    """One assignment_status change; ``by`` is "api" or "platform"."""

    at: datetime
    before: str
    after: str
    by: str
    reason: str | None


@dataclass(frozen=True)
class TaskView:
    sid: str
    workspace_sid: str
    status: str
    reason: str | None
    channel: str
    attributes: str
    queue: str
    workflow: str
    revision: int
    date_created: datetime
    date_updated: datetime
    history: tuple[Change, ...]


@dataclass(frozen=True)
class CallView:
    sid: str
    account_sid: str
    status: str
    direction: str
    to: str
    from_: str
    date_created: datetime
    date_updated: datetime
    start_time: datetime | None
    end_time: datetime | None


@dataclass(frozen=True)
class LoggedRequest:
    """One Twilio-route request; never holds credentials or headers other than If-Match."""

    seq: int
    started: float
    finished: float
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, str]
    if_match: str | None
    status: int
    code: int | None
    account_sid: str | None
    fault: str | None


@dataclass(frozen=True)
class Mutation:
    """A successful task write through the API, with the state of its call at that moment."""

    seq: int
    task_sid: str
    before_status: str
    after_status: str
    reason: str | None
    before_revision: int
    call_status_at_write: str | None
    call_end_at_write: datetime | None
    channel: str
    at: datetime


@dataclass(frozen=True)
class PlatformEvent:
    kind: str
    task_sid: str | None
    call_sid: str | None
    at: datetime


@dataclass(slots=True)
class TaskRecord:
    sid: str
    account_sid: str
    workspace_sid: str
    status: str
    reason: str | None
    channel: str
    channel_sid: str
    attributes: str
    queue: str
    queue_sid: str
    workflow: str
    workflow_sid: str
    priority: int
    timeout: int
    revision: int
    date_created: datetime
    date_updated: datetime
    key: tuple[int, str]
    closed_at: datetime | None = None
    history: list[Change] = field(default_factory=list)

    def view(self) -> TaskView:
        return TaskView(
            sid=self.sid,
            workspace_sid=self.workspace_sid,
            status=self.status,
            reason=self.reason,
            channel=self.channel,
            attributes=self.attributes,
            queue=self.queue,
            workflow=self.workflow,
            revision=self.revision,
            date_created=self.date_created,
            date_updated=self.date_updated,
            history=tuple(self.history),
        )


@dataclass(slots=True)
class CallRecord:
    sid: str
    account_sid: str
    status: str
    direction: str
    to: str
    from_: str
    date_created: datetime
    date_updated: datetime
    start_time: datetime | None
    end_time: datetime | None
    phone_number_sid: str | None

    def view(self) -> CallView:
        return CallView(
            sid=self.sid,
            account_sid=self.account_sid,
            status=self.status,
            direction=self.direction,
            to=self.to,
            from_=self.from_,
            date_created=self.date_created,
            date_updated=self.date_updated,
            start_time=self.start_time,
            end_time=self.end_time,
        )
