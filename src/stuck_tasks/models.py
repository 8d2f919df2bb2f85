"""Small, frozen records passed between the layers, and the one seam to Twilio.

No I/O and no twilio types: every answer is turned into these records in ``gateway.py``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

OPEN_STATUSES = ("pending", "reserved", "assigned")
TERMINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
LIVE_CALL_STATUSES = frozenset({"queued", "ringing", "in-progress"})
VOICE_CHANNEL = "voice"


class Action(enum.Enum):
    """What the tool does with one task."""

    CANCEL = "cancel"
    COMPLETE = "complete"
    CLOSE_PARTICIPANT = "close-participant"
    CLOSE_CHANNEL = "close-channel"
    LEAVE = "leave"

    @property
    def target_status(self) -> str:
        """The ``AssignmentStatus`` this action writes through the TaskRouter Task API."""
        if self is Action.CANCEL:
            return "canceled"
        if self is Action.COMPLETE:
            return "completed"
        raise ValueError(f"{self.value} writes no task status")

    @property
    def uses_task_api(self) -> bool:
        """Cancel and complete go through TaskRouter; messaging closes go through Interactions."""
        return self in (Action.CANCEL, Action.COMPLETE)


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
    NO_EVIDENCE = "no-evidence"
    CONFERENCE_MALFORMED = "conference-malformed"
    CONFERENCE_LIVE = "conference-live"
    CONFERENCE_NOT_FOUND = "conference-not-found"
    CONFERENCE_LOOKUP_FAILED = "conference-lookup-failed"
    WRAPPING_ABANDONED = "wrapping-abandoned"
    WRAPPING_RECENT = "wrapping-recent"
    CHANNEL_CLOSED = "channel-closed"
    CHANNEL_CLOSED_TASK_OPEN = "channel-closed-task-open"
    AGENT_AMBIGUOUS = "agent-participant-ambiguous"
    CONVERSATION_CLOSED = "conversation-closed"
    CONVERSATION_CLOSED_IN_GRACE = "conversation-closed-in-grace"
    CONVERSATION_END_UNKNOWN = "conversation-end-unknown"
    CONVERSATION_ACTIVE = "conversation-active"
    CONVERSATION_NOT_FOUND = "conversation-not-found"
    CONVERSATION_LOOKUP_FAILED = "conversation-lookup-failed"
    CHANNEL_NOT_FOUND = "channel-not-found"
    CHANNEL_LOOKUP_FAILED = "channel-lookup-failed"
    CHANNEL_NOT_CLOSABLE = "channel-not-closable"
    NO_INTERACTION = "no-interaction"
    LEGACY_CHAT = "legacy-chat"
    UNKNOWN_MESSAGING = "unknown-messaging"
    MESSAGING_REFS_MALFORMED = "messaging-refs-malformed"
    EVIDENCE_NOT_CHECKED = "evidence-not-checked"
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
    Reason.NO_EVIDENCE: "no call or conference to check",
    Reason.CONFERENCE_MALFORMED: "conference attributes are malformed",
    Reason.CONFERENCE_LIVE: "conference still live",
    Reason.CONFERENCE_NOT_FOUND: "conference not found (404: unknown is not proof)",
    Reason.CONFERENCE_LOOKUP_FAILED: "conference lookup failed",
    Reason.WRAPPING_ABANDONED: "abandoned wrap-up",
    Reason.WRAPPING_RECENT: "in wrap-up for less than --wrapping-older-than",
    Reason.CHANNEL_CLOSED: "interaction channel closed, agent still joined",
    Reason.CHANNEL_CLOSED_TASK_OPEN: "interaction channel closed, task still open",
    Reason.AGENT_AMBIGUOUS: "several agent participants name this task: left for a person",
    Reason.CONVERSATION_CLOSED: "conversation closed, interaction channel still open",
    Reason.CONVERSATION_CLOSED_IN_GRACE: "conversation closed within the grace period",
    Reason.CONVERSATION_END_UNKNOWN: "conversation closed, close time unknown",
    Reason.CONVERSATION_ACTIVE: "conversation still active",
    Reason.CONVERSATION_NOT_FOUND: "conversation not found",
    Reason.CONVERSATION_LOOKUP_FAILED: "conversation lookup failed",
    Reason.CHANNEL_NOT_FOUND: "interaction channel not found",
    Reason.CHANNEL_LOOKUP_FAILED: "interaction channel lookup failed",
    Reason.CHANNEL_NOT_CLOSABLE: "interaction channel in a state the tool does not close",
    Reason.NO_INTERACTION: "conversation task without interaction SIDs",
    Reason.LEGACY_CHAT: "Programmable Chat task: reported, never touched",
    Reason.UNKNOWN_MESSAGING: "non-voice task of an unknown shape: reported, never touched",
    Reason.MESSAGING_REFS_MALFORMED: "interaction SIDs in the attributes are malformed",
    Reason.EVIDENCE_NOT_CHECKED: "evidence not checked (the run stopped first)",
    Reason.CALL_NOT_CHECKED: "call not checked",
    Reason.CALL_NOT_FOUND: "call not found (404: unknown is not proof)",
    Reason.CALL_LOOKUP_FAILED: "call lookup failed",
    Reason.CALL_LIVE: "call still live",
    Reason.CALL_STATUS_UNKNOWN: "call status not recognised",
    Reason.CALL_END_UNKNOWN: "call end time unknown",
    Reason.CALL_ENDED_IN_GRACE: "call ended within the grace period",
}


@dataclass(frozen=True, slots=True)
class Refs:
    """What a task's attributes point at; every SID here has the right prefix and length."""

    call_sid: str | None = None
    conference_sid: str | None = None
    participant_calls: tuple[str, ...] = ()
    interaction_sid: str | None = None
    channel_sid: str | None = None
    conversation_sid: str | None = None
    legacy_chat: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "call_sid": self.call_sid,
            "conference_sid": self.conference_sid,
            "participant_calls": list(self.participant_calls),
            "interaction_sid": self.interaction_sid,
            "channel_sid": self.channel_sid,
            "conversation_sid": self.conversation_sid,
            "legacy_chat": self.legacy_chat,
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
    # Filled in once the attributes have been read (from a fetch, or from the list when
    # Twilio included them there): what they point at, or why they cannot be read.
    refs: Refs | None = None
    attributes_problem: Reason | None = None
    etag: str | None = None
    # The task's own ``reason`` as Twilio reports it (a closed task's close reason).
    twilio_reason: str | None = None

    @property
    def attributes_read(self) -> bool:
        return self.refs is not None or self.attributes_problem is not None

    @property
    def call_sid(self) -> str | None:
        return self.refs.call_sid if self.refs is not None else None


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of the task list and the URL of the next one (None on the last page)."""

    tasks: tuple[TaskRecord, ...]
    next_url: str | None


@dataclass(frozen=True, slots=True)
class Named:
    """A resource known by SID and friendly name (account, queue, workflow)."""

    sid: str
    friendly_name: str


@dataclass(frozen=True, slots=True)
class Workspace:
    """A TaskRouter workspace, with the account it belongs to."""

    sid: str
    friendly_name: str
    account_sid: str


@dataclass(frozen=True, slots=True)
class Written:
    """The task as the update left it."""

    status: str
    etag: str | None


# ------------------------------------------------------------------ evidence


class Look(enum.Enum):
    """The kinds of lookup a decision can rest on."""

    CALL = "call"
    CONFERENCE = "conference"
    CONFERENCES_NAMED = "conferences-named"
    CHANNEL = "channel"
    PARTICIPANTS = "participants"
    CONVERSATION = "conversation"


@dataclass(frozen=True, slots=True)
class Lookup:
    """One read the decision needs: a call, a conference, a channel, ...

    ``sid`` is the resource's SID (the task's SID for the conferences named after it);
    ``parent`` the interaction SID of a channel; ``status`` the conference status asked for.
    """

    kind: Look
    sid: str
    parent: str = ""
    status: str = ""


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
class ConferenceFacts:
    """A conference's state; ``date_updated`` of a completed conference is its end."""

    sid: str
    status: str
    date_updated: datetime | None


@dataclass(frozen=True, slots=True)
class Conferences:
    """The conferences a list lookup found (possibly none)."""

    found: tuple[ConferenceFacts, ...]


@dataclass(frozen=True, slots=True)
class ChannelFacts:
    """A Flex interaction channel's state."""

    sid: str
    status: str


@dataclass(frozen=True, slots=True)
class ParticipantFacts:
    """A participant of an interaction channel: its type and the SIDs its routing names."""

    sid: str
    kind: str
    routing_sids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Participants:
    """Every participant of an interaction channel."""

    found: tuple[ParticipantFacts, ...]


@dataclass(frozen=True, slots=True)
class ConversationFacts:
    """A Conversation's state; ``date_updated`` of a closed one is when it closed."""

    sid: str
    state: str
    date_updated: datetime | None


@dataclass(frozen=True, slots=True)
class Missing:
    """A lookup that gave no evidence: not found, or failed after all retries."""

    reason: Reason
    code: int | None = None


Found = CallFacts | ConferenceFacts | Conferences | ChannelFacts | Participants | ConversationFacts
Result = Found | Missing


@dataclass(frozen=True, slots=True)
class Evidence:
    """The lookups made for one task and what each answered."""

    answers: tuple[tuple[Lookup, Result], ...] = ()

    def get(self, lookup: Lookup) -> Result | None:
        for known, result in self.answers:
            if known == lookup:
                return result
        return None

    def plus(self, answers: Iterable[tuple[Lookup, Result]]) -> Evidence:
        return Evidence(self.answers + tuple(answers))

    @classmethod
    def of(cls, answers: Mapping[Lookup, Result]) -> Evidence:
        return cls(tuple(answers.items()))


@dataclass(frozen=True, slots=True)
class Decision:
    """One verdict for one task, with a human detail line.

    ``participant_sid`` names the agent participant a CLOSE_PARTICIPANT closes.
    """

    action: Action
    reason: Reason
    detail: str
    participant_sid: str | None = None

    @property
    def acts(self) -> bool:
        return self.action is not Action.LEAVE


@dataclass(frozen=True, slots=True)
class Case:
    """One examined task: the record, the verdict, and the evidence it rests on.

    ``call_status`` and ``ended_at`` sum the evidence up for the plan and the audit log.
    """

    task: TaskRecord
    decision: Decision
    evidence: Evidence = Evidence()
    call_status: str | None = None
    ended_at: datetime | None = None

    @property
    def sid(self) -> str:
        return self.task.sid


class Outcome(enum.Enum):
    """What happened when the tool tried to act on a planned task."""

    CLOSED = "closed"
    SKIPPED = "skipped"
    FAILED = "failed"
    # A write may have reached Twilio and its outcome could not be read back.
    UNKNOWN = "unknown"
    NOT_ATTEMPTED = "not-attempted"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The settled result of one planned write."""

    outcome: Outcome
    why: str  # a stable code: "closed", "changed-412", "now-wrapping", "error-20001", ...
    detail: str
    status_after: str | None = None
    code: int | None = None
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Rules:
    """The knobs of the decision."""

    grace: timedelta
    messaging: bool = False  # --channels includes messaging
    wrapping_after: timedelta | None = None  # --include-wrapping --wrapping-older-than

    @property
    def statuses(self) -> tuple[str, ...]:
        """The statuses the listing asks for."""
        return OPEN_STATUSES + (("wrapping",) if self.wrapping_after is not None else ())


# ------------------------------------------------------------------ the seam


class Gateway(Protocol):
    """Everything the run needs from Twilio, as our own records (``gateway.TwilioGateway``).

    Each method is one request (``conferences_named`` and ``channel_participants`` read one
    page). Errors are the typed ones of ``errors.py``.
    """

    async def workspaces(self, friendly_name: str | None = None) -> list[Workspace]: ...

    async def workspace(self, sid: str) -> Workspace: ...

    async def account_name(self, sid: str) -> str: ...

    async def task_queues(self, workspace_sid: str) -> list[Named]: ...

    async def workflows(self, workspace_sid: str) -> list[Named]: ...

    async def first_task_page(
        self, workspace_sid: str, *, statuses: tuple[str, ...], filters: Mapping[str, str]
    ) -> TaskPage: ...

    async def next_task_page(self, workspace_sid: str, url: str) -> TaskPage: ...

    async def fetch_task(self, workspace_sid: str, sid: str) -> TaskRecord: ...

    async def update_task(
        self, workspace_sid: str, sid: str, *, status: str, reason: str, if_match: str | None
    ) -> Written: ...

    async def fetch_call(self, sid: str) -> CallFacts: ...

    async def fetch_conference(self, sid: str) -> ConferenceFacts: ...

    async def conferences_named(self, name: str, *, status: str) -> Conferences: ...

    async def fetch_channel(self, interaction_sid: str, channel_sid: str) -> ChannelFacts: ...

    async def channel_participants(
        self, interaction_sid: str, channel_sid: str
    ) -> Participants: ...

    async def fetch_conversation(self, sid: str) -> ConversationFacts: ...

    async def close_participant(
        self, interaction_sid: str, channel_sid: str, participant_sid: str
    ) -> None: ...

    async def close_channel(self, interaction_sid: str, channel_sid: str) -> None: ...

    async def aclose(self) -> None: ...
