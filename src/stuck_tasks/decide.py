"""The pure decision: which task to close, how, and why. No I/O, no clock, no twilio.

Every rule needs proof. A voice task is closed when every piece of evidence its attributes name
(the call, the conference, the conference's participant calls; or, when they name none, the
conference TaskRouter named after the task) is over, and has been for the grace period. A Flex
Conversations task is closed, through the Interactions API, when its interaction channel is
closed (by closing the agent's participant) or its Conversation is closed (by closing the
channel). Anything unknown is left, with its own reason.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from .models import (
    LIVE_CALL_STATUSES,
    OPEN_STATUSES,
    TERMINAL_CALL_STATUSES,
    VOICE_CHANNEL,
    Action,
    CallFacts,
    ChannelFacts,
    ConferenceFacts,
    ConversationFacts,
    Decision,
    Evidence,
    Missing,
    Reason,
    Refs,
    Rules,
    TaskRecord,
)

SID = {
    prefix: re.compile(rf"^{prefix}[0-9a-fA-F]{{32}}$") for prefix in ("CA", "CF", "KD", "UO", "CH")
}
CLOSED_CHANNEL_STATUSES = frozenset({"closed", "inactive"})
# Twilio's timestamps have whole seconds: an end stamped 12:00:00 may have been 12:00:00.999.
TIMESTAMP_RESOLUTION = timedelta(seconds=1)


def elapsed(now: datetime, stamp: datetime) -> timedelta:
    """The least time that can have passed since a Twilio timestamp (never more than the truth)."""
    return now - stamp - TIMESTAMP_RESOLUTION


def read_attributes(attributes: str | None) -> Refs | Reason:
    """What the task's attributes point at, or the Reason they cannot be read.

    Attributes are JSON text written by whoever created the task, so every shape is possible.
    """
    if attributes is None or attributes.strip() == "":
        return Refs()
    try:
        parsed = json.loads(attributes)
    except (ValueError, RecursionError):
        return Reason.ATTRIBUTES_NOT_JSON
    if not isinstance(parsed, dict):
        return Reason.ATTRIBUTES_NOT_OBJECT
    call_sid = parsed.get("call_sid")
    if call_sid is not None:
        if not isinstance(call_sid, str):
            return Reason.CALL_SID_NOT_STRING
        if not SID["CA"].match(call_sid):
            return Reason.CALL_SID_MALFORMED
    conference = _read_conference(parsed.get("conference"))
    if isinstance(conference, Reason):
        return conference
    messaging = _read_messaging(parsed)
    if isinstance(messaging, Reason):
        return messaging
    interaction, channel, conversation, legacy = messaging
    return Refs(
        call_sid=call_sid,
        conference_sid=conference[0],
        participant_calls=conference[1],
        interaction_sid=interaction,
        channel_sid=channel,
        conversation_sid=conversation,
        legacy_chat=legacy,
    )


def _read_conference(value: Any) -> tuple[str | None, tuple[str, ...]] | Reason:
    if value is None:
        return None, ()
    if not isinstance(value, dict):
        return Reason.CONFERENCE_MALFORMED
    sid = value.get("sid")
    if sid is not None and not (isinstance(sid, str) and SID["CF"].match(sid)):
        return Reason.CONFERENCE_MALFORMED
    participants = value.get("participants")
    calls: list[str] = []
    if participants is not None:
        if not isinstance(participants, dict):
            return Reason.CONFERENCE_MALFORMED
        for call in participants.values():
            if not (isinstance(call, str) and SID["CA"].match(call)):
                return Reason.CONFERENCE_MALFORMED
            if call not in calls:
                calls.append(call)
    return sid, tuple(calls)


def _read_messaging(
    parsed: dict[str, Any],
) -> tuple[str | None, str | None, str | None, bool] | Reason:
    found: list[str | None] = []
    for key, prefix in (
        ("flexInteractionSid", "KD"),
        ("flexInteractionChannelSid", "UO"),
        ("conversationSid", "CH"),
    ):
        value = parsed.get(key)
        if value is not None and not (isinstance(value, str) and SID[prefix].match(value)):
            return Reason.MESSAGING_REFS_MALFORMED
        found.append(value)
    legacy = found[0] is None and found[2] is None and isinstance(parsed.get("channelSid"), str)
    return found[0], found[1], found[2], legacy


def is_messaging(task: TaskRecord) -> bool:
    """A Flex Conversations task: not voice, and its attributes name an interaction channel."""
    refs = task.refs
    return task.channel != VOICE_CHANNEL and refs is not None and refs.channel_sid is not None


def decide(task: TaskRecord, evidence: Evidence, *, now: datetime, rules: Rules) -> Decision:
    """Decide one task. Total: every input gets exactly one Decision, and only proof acts.

    :param task: the task, with its attributes already read (``read_attributes``).
    :param evidence: the lookups made for it; ``None`` fields were not looked up.
    :param now: the current time (aware, UTC).
    :param rules: grace period, messaging and wrap-up options.
    """
    if (
        task.status == "wrapping"
        and rules.wrapping_after is not None
        and task.channel == VOICE_CHANNEL
    ):
        return _decide_wrapping(task, evidence, now=now, older_than=rules.wrapping_after)
    if task.status not in OPEN_STATUSES:
        return _leave(Reason.TASK_NOT_OPEN, f"task is {task.status}")
    if task.channel != VOICE_CHANNEL and not rules.messaging:
        return _leave(Reason.NOT_VOICE, f"channel {task.channel or '(none)'}")
    if not task.attributes_read:
        return _leave(Reason.CALL_NOT_CHECKED, "attributes were not read")
    if task.attributes_problem is not None:
        return _leave(task.attributes_problem, task.attributes_problem.label)
    assert task.refs is not None
    if task.channel != VOICE_CHANNEL:
        return _decide_messaging(task, task.refs, evidence, now=now, grace=rules.grace)
    ended = _voice_ended(task.refs, evidence)
    if isinstance(ended, Decision):
        return ended
    since = elapsed(now, ended[0])
    if since < rules.grace:
        return _leave(Reason.CALL_ENDED_IN_GRACE, f"{ended[1]} {format_age(since)} ago")
    action = Action.COMPLETE if task.status == "assigned" else Action.CANCEL
    return Decision(action, Reason.CALL_ENDED, f"{ended[1]} {format_age(since)} ago")


def _voice_ended(refs: Refs, evidence: Evidence) -> tuple[datetime, str] | Decision:
    """When every piece of voice evidence ended: (latest end, description), or why not."""
    pieces: list[tuple[str, CallFacts | ConferenceFacts | Missing | None]] = []
    if refs.call_sid:
        pieces.append((f"call {refs.call_sid}", evidence.call))
    if refs.conference_sid:
        pieces.append((f"conference {refs.conference_sid}", evidence.conference))
    extra = [c for c in refs.participant_calls if c != refs.call_sid]
    if extra:
        results = evidence.participant_calls
        for i, sid in enumerate(extra):
            pieces.append((f"participant call {sid}", results[i] if i < len(results) else None))
    if not pieces:
        # No SID at all (an outbound task, say): TaskRouter names the conference after the task.
        if evidence.conference is None:
            return _leave(
                Reason.CALL_NOT_CHECKED, "the conference named after the task was not looked up"
            )
        if (
            isinstance(evidence.conference, Missing)
            and evidence.conference.reason is Reason.CONFERENCE_NOT_FOUND
        ):
            return _leave(
                Reason.NO_EVIDENCE, "no call_sid, no conference in the attributes or by name"
            )
        pieces.append(("conference named after the task", evidence.conference))
    ends: list[datetime] = []
    verdicts: list[Decision] = []
    for name, result in pieces:
        piece = _piece(name, result)
        if isinstance(piece, Decision):
            verdicts.append(piece)
        else:
            ends.append(piece)
    if verdicts:
        # A live piece says most; then a missing one.
        live = [v for v in verdicts if v.reason in (Reason.CALL_LIVE, Reason.CONFERENCE_LIVE)]
        return (live or verdicts)[0]
    if len(pieces) == 1:
        return max(ends), f"{pieces[0][0]} {_status_of(pieces[0][1])}"
    return max(ends), f"all {len(pieces)} calls and conferences over, the last"


def _status_of(result: object) -> str:
    return getattr(result, "status", "")


def _piece(name: str, result: CallFacts | ConferenceFacts | Missing | None) -> datetime | Decision:
    if result is None:
        return _leave(Reason.CALL_NOT_CHECKED, f"{name} was not looked up")
    if isinstance(result, Missing):
        code = f" (error {result.code})" if result.code is not None else ""
        return _leave(result.reason, f"{name}: {result.reason.label}{code}")
    if isinstance(result, ConferenceFacts):
        if result.status != "completed":
            return _leave(Reason.CONFERENCE_LIVE, f"{name} {result.status}")
        if result.date_updated is None:
            return _leave(Reason.CALL_END_UNKNOWN, f"{name} completed, no end time")
        return result.date_updated
    if result.status in LIVE_CALL_STATUSES:
        return _leave(Reason.CALL_LIVE, f"{name} {result.status}")
    if result.status not in TERMINAL_CALL_STATUSES:
        return _leave(Reason.CALL_STATUS_UNKNOWN, f"{name} status {result.status!r}")
    if result.ended_at is None:
        return _leave(Reason.CALL_END_UNKNOWN, f"{name} {result.status}, no end time")
    return result.ended_at


def _decide_wrapping(
    task: TaskRecord, evidence: Evidence, *, now: datetime, older_than: timedelta
) -> Decision:
    """Abandoned wrap-up: counted from the call's end, or the task's last update without a call."""
    if task.attributes_problem is not None:
        return _leave(task.attributes_problem, task.attributes_problem.label)
    if task.call_sid is not None:
        piece = _piece(f"call {task.call_sid}", evidence.call)
        if isinstance(piece, Decision):
            return piece
        since, what = elapsed(now, piece), "call ended"
    elif task.date_updated is not None:
        since, what = elapsed(now, task.date_updated), "no call; task last updated"
    else:
        return _leave(Reason.CALL_END_UNKNOWN, "no call and no last update time")
    if since < older_than:
        return _leave(Reason.WRAPPING_RECENT, f"wrapping, {what} {format_age(since)} ago")
    return Decision(
        Action.COMPLETE, Reason.WRAPPING_ABANDONED, f"wrapping, {what} {format_age(since)} ago"
    )


def _decide_messaging(
    task: TaskRecord, refs: Refs, evidence: Evidence, *, now: datetime, grace: timedelta
) -> Decision:
    if refs.legacy_chat:
        return _leave(Reason.LEGACY_CHAT, "attributes carry a Programmable Chat channelSid")
    if refs.channel_sid is None or refs.interaction_sid is None:
        if refs.conversation_sid is not None:
            return _leave(Reason.NO_INTERACTION, f"conversation {refs.conversation_sid} only")
        return _leave(Reason.UNKNOWN_MESSAGING, f"channel {task.channel or '(none)'}")
    channel = evidence.channel
    if channel is None:
        return _leave(Reason.CALL_NOT_CHECKED, "interaction channel was not looked up")
    if isinstance(channel, Missing):
        return _leave(channel.reason, f"channel {refs.channel_sid}: {channel.reason.label}")
    if channel.status in CLOSED_CHANNEL_STATUSES:
        if evidence.agent is None:
            return _leave(
                Reason.NO_AGENT_PARTICIPANT, f"channel {channel.status}; close it in Flex"
            )
        return Decision(
            Action.CLOSE_PARTICIPANT,
            Reason.CHANNEL_CLOSED,
            f"channel {channel.status}, agent {evidence.agent.sid} joined",
        )
    if channel.status != "active":
        return _leave(Reason.CHANNEL_NOT_CLOSABLE, f"channel {channel.status}")
    return _decide_on_conversation(refs, channel, evidence.conversation, now=now, grace=grace)


def _decide_on_conversation(
    refs: Refs,
    channel: ChannelFacts,
    conversation: ConversationFacts | Missing | None,
    *,
    now: datetime,
    grace: timedelta,
) -> Decision:
    if refs.conversation_sid is None:
        return _leave(
            Reason.CONVERSATION_ACTIVE, f"channel {channel.status}, no conversation to check"
        )
    if conversation is None:
        return _leave(Reason.CALL_NOT_CHECKED, "conversation was not looked up")
    if isinstance(conversation, Missing):
        return _leave(
            conversation.reason,
            f"conversation {refs.conversation_sid}: {conversation.reason.label}",
        )
    if conversation.state != "closed":
        return _leave(
            Reason.CONVERSATION_ACTIVE, f"channel active, conversation {conversation.state}"
        )
    if conversation.date_updated is None:
        return _leave(Reason.CALL_END_UNKNOWN, "conversation closed, no close time")
    since = elapsed(now, conversation.date_updated)
    if since < grace:
        return _leave(
            Reason.CONVERSATION_CLOSED_IN_GRACE, f"conversation closed {format_age(since)} ago"
        )
    return Decision(
        Action.CLOSE_CHANNEL,
        Reason.CONVERSATION_CLOSED,
        f"conversation closed {format_age(since)} ago",
    )


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
