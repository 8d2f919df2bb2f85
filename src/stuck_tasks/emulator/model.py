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
CONFERENCE_STATUSES: tuple[str, ...] = ("init", "in-progress", "completed")
# interaction_channel_enum_channel_status / _enum_type (twilio_flex_v1.json).
CHANNEL_STATUSES: tuple[str, ...] = (
    "setup",
    "active",
    "failed",
    "closed",
    "inactive",
    "pause",
    "transfer",
)
CHANNEL_TYPES: tuple[str, ...] = (
    "voice",
    "sms",
    "email",
    "web",
    "whatsapp",
    "chat",
    "messenger",
    "gbm",
)
PARTICIPANT_TYPES: tuple[str, ...] = ("supervisor", "customer", "external", "agent", "unknown")
# The API never shows a participant's state; the emulator tracks it to apply the park rules.
PARTICIPANT_STATUSES: tuple[str, ...] = ("joined", "wrapup", "closed")
CONVERSATION_STATES: tuple[str, ...] = ("initializing", "inactive", "active", "closed")


@dataclass(frozen=True)
class Account:
    sid: str
    auth_token: str = field(repr=False)
    friendly_name: str
    date_created: datetime
    region: str = "us1"


@dataclass(frozen=True)
class ApiKey:
    """``kind``: "main", "standard" or "restricted"; ``permissions`` only for restricted."""

    sid: str
    secret: str = field(repr=False)
    account_sid: str
    friendly_name: str
    kind: str = "standard"
    permissions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workspace:
    sid: str
    account_sid: str
    friendly_name: str
    date_created: datetime
    default_activity_sid: str
    timeout_activity_sid: str


@dataclass(frozen=True)
class TaskQueue:
    """A TaskQueue: named by tasks (``add_task(queue=...)``) or made by ``add_task_queue``."""

    sid: str
    account_sid: str
    workspace_sid: str
    friendly_name: str
    date_created: datetime


@dataclass(frozen=True)
class Workflow:
    """A Workflow; ``default_queue_sid`` is the queue its configuration routes every task to."""

    sid: str
    account_sid: str
    workspace_sid: str
    friendly_name: str
    date_created: datetime
    default_queue_sid: str | None


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
    # The Host header as sent ("" when absent): which Twilio host the request was meant for.
    host: str = ""
    user_agent: str = ""  # so tests can tell whose traffic it was


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
    # attributes carry flexInteractionSid, flexInteractionChannelSid or conversationSid: Twilio
    # says such tasks must be closed through the Interactions API, never the Task API.
    is_conversation_task: bool = False


@dataclass(frozen=True)
class TaskChange:
    """A task status change caused by an Interactions API write."""

    task_sid: str
    before: str
    after: str


@dataclass(frozen=True)
class FlexWrite:
    """A successful write through the Flex Interactions API."""

    seq: int
    route: str  # "update_interaction_channel" or "update_interaction_participant"
    interaction_sid: str
    channel_sid: str
    participant_sid: str | None
    form: dict[str, str]
    before_channel_status: str
    after_channel_status: str
    task_changes: tuple[TaskChange, ...]
    at: datetime


@dataclass(frozen=True)
class InteractionRefs:
    interaction_sid: str
    channel_sid: str
    agent_participant_sid: str | None
    task_sid: str
    conversation_sid: str | None = None


@dataclass(frozen=True)
class ConferenceView:
    sid: str
    account_sid: str
    friendly_name: str
    status: str
    date_created: datetime
    date_updated: datetime
    participants: dict[str, str]
    reason_conference_ended: str | None
    call_sid_ending_conference: str | None


@dataclass(frozen=True)
class ParticipantView:
    sid: str
    type: str
    status: str
    task_sid: str | None


@dataclass(frozen=True)
class InteractionChannelView:
    sid: str
    interaction_sid: str
    account_sid: str
    type: str
    status: str
    conversation_sid: str | None
    task_sids: tuple[str, ...]
    participants: tuple[ParticipantView, ...]


@dataclass(frozen=True)
class ConversationView:
    sid: str
    account_sid: str
    state: str
    date_created: datetime
    date_updated: datetime


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


@dataclass(slots=True)
class ConferenceRecord:
    sid: str
    account_sid: str
    friendly_name: str
    status: str
    date_created: datetime
    date_updated: datetime
    key: tuple[int, str]
    participants: dict[str, str] = field(default_factory=dict)
    region: str = "us1"
    reason_conference_ended: str | None = None
    call_sid_ending_conference: str | None = None

    def view(self) -> ConferenceView:
        return ConferenceView(
            sid=self.sid,
            account_sid=self.account_sid,
            friendly_name=self.friendly_name,
            status=self.status,
            date_created=self.date_created,
            date_updated=self.date_updated,
            participants=dict(self.participants),
            reason_conference_ended=self.reason_conference_ended,
            call_sid_ending_conference=self.call_sid_ending_conference,
        )


@dataclass(slots=True)
class ParticipantRecord:
    sid: str
    interaction_sid: str
    channel_sid: str
    type: str
    status: str
    key: tuple[int, str]
    task_sid: str | None = None
    worker_sid: str | None = None
    reservation_sid: str | None = None

    def view(self) -> ParticipantView:
        return ParticipantView(self.sid, self.type, self.status, self.task_sid)


@dataclass(slots=True)
class ChannelRecord:
    sid: str
    interaction_sid: str
    account_sid: str
    type: str
    status: str
    conversation_sid: str | None
    task_sids: list[str] = field(default_factory=list)
    participants: dict[str, ParticipantRecord] = field(default_factory=dict)
    participant_keys: list[tuple[int, str]] = field(default_factory=list)
    error_code: int | None = None
    error_message: str | None = None

    def view(self) -> InteractionChannelView:
        return InteractionChannelView(
            sid=self.sid,
            interaction_sid=self.interaction_sid,
            account_sid=self.account_sid,
            type=self.type,
            status=self.status,
            conversation_sid=self.conversation_sid,
            task_sids=tuple(self.task_sids),
            participants=tuple(p.view() for p in self.participants.values()),
        )


@dataclass(slots=True)
class ConversationRecord:
    sid: str
    account_sid: str
    chat_service_sid: str
    messaging_service_sid: str | None
    friendly_name: str | None
    attributes: str
    state: str
    date_created: datetime
    date_updated: datetime

    def view(self) -> ConversationView:
        return ConversationView(
            self.sid, self.account_sid, self.state, self.date_created, self.date_updated
        )
