"""The pure decision: which task to close, how, and why. No I/O, no clock, no twilio.

Every rule needs proof. A voice task is closed when every piece of evidence its attributes name
(the call, the conference, the conference's participant calls; or, when they name none, the
conferences TaskRouter named after the task) is over, and has been for the grace period. A
Flex Conversations task is closed, through the Interactions API, when its interaction channel
is closed (by closing the agent's participant, or the channel when no agent joined) or its
Conversation is closed (by closing the channel). Anything unknown is left, with its own reason.

There is one decision tree, ``judge``: given what has been looked up so far it answers either a
``Decision`` or the ``Need`` for more lookups. The examiner asks it what to read next
(``lookups_needed``), so no second tree of "which evidence does this task need" exists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
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
    Conferences,
    ConversationFacts,
    Decision,
    Evidence,
    Look,
    Lookup,
    Missing,
    ParticipantFacts,
    Participants,
    Reason,
    Refs,
    Result,
    Rules,
    TaskRecord,
)

SID_PATTERNS = {
    prefix: re.compile(rf"^{prefix}[0-9a-fA-F]{{32}}$")
    for prefix in ("AC", "CA", "CF", "CH", "KD", "SK", "UO", "UT", "WQ", "WS", "WT", "WW")
}
CLOSED_CHANNEL_STATUSES = frozenset({"closed", "inactive"})
# Twilio's timestamps have whole seconds: an end stamped 12:00:00 may have been 12:00:00.999.
TIMESTAMP_RESOLUTION = timedelta(seconds=1)
# The conference list answers in-progress conferences only unless asked (changelog, 2026-09-30);
# a conference named after the task is live while in either of the first two.
NAMED_CONFERENCE_STATUSES = ("in-progress", "init", "completed")


def is_sid(value: object, prefix: str) -> bool:
    """``prefix`` followed by 32 hex digits."""
    return isinstance(value, str) and SID_PATTERNS[prefix].match(value) is not None


@dataclass(frozen=True, slots=True)
class Need:
    """The decision cannot be made yet: these lookups come first."""

    lookups: tuple[Lookup, ...]


def elapsed(now: datetime, stamp: datetime) -> timedelta:
    """The least time that can have passed since a Twilio timestamp (never more than the truth)."""
    return now - stamp - TIMESTAMP_RESOLUTION


def read_attributes(attributes: object) -> Refs | Reason:
    """What the task's attributes point at, or the Reason they cannot be read.

    Attributes are JSON text written by whoever created the task, so every shape is possible.
    """
    if attributes is None or (isinstance(attributes, str) and attributes.strip() == ""):
        return Refs()
    if not isinstance(attributes, str):
        return Reason.ATTRIBUTES_NOT_JSON  # the API promises a JSON string
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
        if not is_sid(call_sid, "CA"):
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
    if sid is not None and not is_sid(sid, "CF"):
        return Reason.CONFERENCE_MALFORMED
    participants = value.get("participants")
    calls: list[str] = []
    if participants is not None:
        if not isinstance(participants, dict):
            return Reason.CONFERENCE_MALFORMED
        for call in participants.values():
            if not is_sid(call, "CA"):
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
        if value is not None and not is_sid(value, prefix):
            return Reason.MESSAGING_REFS_MALFORMED
        found.append(value)
    legacy = found[0] is None and found[2] is None and isinstance(parsed.get("channelSid"), str)
    return found[0], found[1], found[2], legacy


def needs_attributes(task: TaskRecord, rules: Rules) -> bool:
    """Whether the decision of this task depends on its attributes (so they must be read)."""
    if task.channel == VOICE_CHANNEL:
        return task.status in OPEN_STATUSES or (
            task.status == "wrapping" and rules.wrapping_after is not None
        )
    return rules.messaging and task.status in OPEN_STATUSES


def agent_of(task_sid: str, participants: Participants) -> list[ParticipantFacts]:
    """The agent participants whose routing properties name this task.

    Closing a participant completes its task, so only a participant that provably belongs to
    the task may be closed; several of them is ambiguous and left for a person.
    """
    return [p for p in participants.found if p.kind == "agent" and task_sid in p.routing_sids]


# ------------------------------------------------------------------ the one tree


def judge(task: TaskRecord, evidence: Evidence, *, now: datetime, rules: Rules) -> Decision | Need:
    """The decision for ``task`` on ``evidence``, or the lookups it still needs.

    :param task: the task, with its attributes read (``read_attributes``) if they matter.
    :param evidence: the lookups made for it so far.
    :param now: the current time on Twilio's clock (aware, UTC).
    :param rules: grace period, messaging and wrap-up options.
    """
    if (
        task.status == "wrapping"
        and rules.wrapping_after is not None
        and task.channel == VOICE_CHANNEL
    ):
        return _judge_wrapping(task, evidence, now=now, older_than=rules.wrapping_after)
    if task.status not in OPEN_STATUSES:
        return _leave(Reason.TASK_NOT_OPEN, f"task is {task.status}")
    if task.channel != VOICE_CHANNEL and not rules.messaging:
        return _leave(Reason.NOT_VOICE, f"channel {task.channel or '(none)'}")
    if not task.attributes_read:
        return _leave(Reason.EVIDENCE_NOT_CHECKED, "attributes were not read")
    if task.attributes_problem is not None:
        return _leave(task.attributes_problem, task.attributes_problem.label)
    assert task.refs is not None
    if task.channel != VOICE_CHANNEL:
        return _judge_messaging(task, task.refs, evidence, now=now, grace=rules.grace)
    ended = _voice_ended(task.sid, task.refs, evidence)
    if not isinstance(ended, tuple):
        return ended
    since = elapsed(now, ended[0])
    if since < rules.grace:
        return _leave(Reason.CALL_ENDED_IN_GRACE, f"{ended[1]} {format_age(since)} ago")
    action = Action.COMPLETE if task.status == "assigned" else Action.CANCEL
    return Decision(action, Reason.CALL_ENDED, f"{ended[1]} {format_age(since)} ago")


def lookups_needed(
    task: TaskRecord, evidence: Evidence, *, now: datetime, rules: Rules
) -> tuple[Lookup, ...]:
    """The lookups ``judge`` needs before it can decide (none: it can decide now)."""
    step = judge(task, evidence, now=now, rules=rules)
    return step.lookups if isinstance(step, Need) else ()


def decide(task: TaskRecord, evidence: Evidence, *, now: datetime, rules: Rules) -> Decision:
    """Decide one task. Total: every input gets exactly one Decision, and only proof acts.

    Evidence that was never looked up (the run stopped first) is not proof: the task is left.
    """
    step = judge(task, evidence, now=now, rules=rules)
    if isinstance(step, Decision):
        return step
    reason = (
        Reason.CALL_NOT_CHECKED if task.channel == VOICE_CHANNEL else Reason.EVIDENCE_NOT_CHECKED
    )
    what = ", ".join(f"{lk.kind.value} {lk.sid}" for lk in step.lookups)
    return _leave(reason, f"not looked up: {what}")


def _voice_ended(
    task_sid: str, refs: Refs, evidence: Evidence
) -> tuple[datetime, str] | Decision | Need:
    """When every piece of voice evidence ended: (latest end, description), or why not."""
    pieces: list[tuple[str, Lookup]] = []
    if refs.call_sid:
        pieces.append((f"call {refs.call_sid}", Lookup(Look.CALL, refs.call_sid)))
    if refs.conference_sid:
        pieces.append(
            (f"conference {refs.conference_sid}", Lookup(Look.CONFERENCE, refs.conference_sid))
        )
    for sid in refs.participant_calls:
        if sid != refs.call_sid:
            pieces.append((f"participant call {sid}", Lookup(Look.CALL, sid)))
    if not pieces:
        # No SID at all (an outbound task, say): TaskRouter names the conference after the task.
        return _named_conference(task_sid, evidence)
    missing = tuple(lookup for _, lookup in pieces if evidence.get(lookup) is None)
    if missing:
        return Need(missing)
    ends: list[datetime] = []
    verdicts: list[Decision] = []
    for name, lookup in pieces:
        piece = _piece(name, evidence.get(lookup))
        if isinstance(piece, Decision):
            verdicts.append(piece)
        else:
            ends.append(piece)
    if verdicts:
        # A live piece says most; then a missing one.
        live = [v for v in verdicts if v.reason in (Reason.CALL_LIVE, Reason.CONFERENCE_LIVE)]
        return (live or verdicts)[0]
    if len(pieces) == 1:
        return max(ends), f"{pieces[0][0]} {_status_of(evidence.get(pieces[0][1]))}"
    return max(ends), f"all {len(pieces)} calls and conferences over, the last"


def _named_conference(task_sid: str, evidence: Evidence) -> tuple[datetime, str] | Decision | Need:
    """Ask for each status in turn: a live one (in-progress, init) keeps the task; a completed
    one is over. Since 2026-09-30 a list without ``Status`` finds in-progress conferences only."""
    for status in NAMED_CONFERENCE_STATUSES:
        lookup = Lookup(Look.CONFERENCES_NAMED, task_sid, status=status)
        found = evidence.get(lookup)
        if found is None:
            return Need((lookup,))
        if isinstance(found, Missing):
            code = f" (error {found.code})" if found.code is not None else ""
            return _leave(
                found.reason, f"conferences named after the task: {found.reason.label}{code}"
            )
        if not isinstance(found, Conferences):
            return _leave(Reason.CONFERENCE_LOOKUP_FAILED, "unexpected conference lookup answer")
        if status != "completed" and found.found:
            return _leave(Reason.CONFERENCE_LIVE, f"conference named after the task {status}")
        if status == "completed":
            if not found.found:
                return _leave(
                    Reason.NO_EVIDENCE, "no call_sid, no conference in the attributes or by name"
                )
            latest = max(found.found, key=lambda c: (c.date_updated is not None, c.date_updated))
            piece = _piece("conference named after the task", latest)
            if isinstance(piece, Decision):
                return piece
            return piece, "conference named after the task completed"
    raise AssertionError("unreachable")


def _status_of(result: object) -> str:
    return getattr(result, "status", "")


def _piece(name: str, result: Result | None) -> datetime | Decision:
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
    if not isinstance(result, CallFacts):
        return _leave(Reason.CALL_LOOKUP_FAILED, f"{name}: unexpected answer")
    if result.status in LIVE_CALL_STATUSES:
        return _leave(Reason.CALL_LIVE, f"{name} {result.status}")
    if result.status not in TERMINAL_CALL_STATUSES:
        return _leave(Reason.CALL_STATUS_UNKNOWN, f"{name} status {result.status!r}")
    if result.ended_at is None:
        return _leave(Reason.CALL_END_UNKNOWN, f"{name} {result.status}, no end time")
    return result.ended_at


def _judge_wrapping(
    task: TaskRecord, evidence: Evidence, *, now: datetime, older_than: timedelta
) -> Decision | Need:
    """Abandoned wrap-up: counted from the call's end, or the task's last update without a call."""
    if not task.attributes_read:
        return _leave(Reason.CALL_NOT_CHECKED, "attributes were not read")
    if task.attributes_problem is not None:
        return _leave(task.attributes_problem, task.attributes_problem.label)
    if task.call_sid is not None:
        lookup = Lookup(Look.CALL, task.call_sid)
        result = evidence.get(lookup)
        if result is None:
            return Need((lookup,))
        piece = _piece(f"call {task.call_sid}", result)
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


def _judge_messaging(
    task: TaskRecord, refs: Refs, evidence: Evidence, *, now: datetime, grace: timedelta
) -> Decision | Need:
    if refs.legacy_chat:
        return _leave(Reason.LEGACY_CHAT, "attributes carry a Programmable Chat channelSid")
    if refs.channel_sid is None or refs.interaction_sid is None:
        if refs.conversation_sid is not None:
            return _leave(Reason.NO_INTERACTION, f"conversation {refs.conversation_sid} only")
        return _leave(Reason.UNKNOWN_MESSAGING, f"channel {task.channel or '(none)'}")
    kd, uo = refs.interaction_sid, refs.channel_sid
    channel_lookup = Lookup(Look.CHANNEL, uo, parent=kd)
    channel = evidence.get(channel_lookup)
    if channel is None:
        return Need((channel_lookup,))
    if isinstance(channel, Missing):
        return _leave(channel.reason, f"channel {uo}: {channel.reason.label}")
    if not isinstance(channel, ChannelFacts):
        return _leave(Reason.CHANNEL_LOOKUP_FAILED, f"channel {uo}: unexpected answer")
    if channel.status in CLOSED_CHANNEL_STATUSES:
        return _judge_closed_channel(
            task.sid, channel, Lookup(Look.PARTICIPANTS, uo, parent=kd), evidence
        )
    if channel.status != "active":
        return _leave(Reason.CHANNEL_NOT_CLOSABLE, f"channel {channel.status}")
    return _judge_conversation(refs, channel, evidence, now=now, grace=grace)


def _judge_closed_channel(
    task_sid: str, channel: ChannelFacts, lookup: Lookup, evidence: Evidence
) -> Decision | Need:
    """A closed channel whose task is still open.

    With this task's agent on it, close just that participant (Twilio's park-an-interaction
    guide: "the associated task is completed"). With no agent of this task (a reserved task
    was never accepted), close the channel with ``Routing`` closed, the narrowest write that
    closes its tasks; Twilio may answer 80906 "Interaction Not Open", which leaves the task.
    """
    participants = evidence.get(lookup)
    if participants is None:
        return Need((lookup,))
    if not isinstance(participants, Participants):
        return _leave(
            Reason.CHANNEL_LOOKUP_FAILED, f"participants of channel {channel.sid}: lookup failed"
        )
    agents = agent_of(task_sid, participants)
    if len(agents) > 1:
        return _leave(
            Reason.AGENT_AMBIGUOUS, f"channel {channel.status}, {len(agents)} agents name the task"
        )
    if agents:
        return Decision(
            Action.CLOSE_PARTICIPANT,
            Reason.CHANNEL_CLOSED,
            f"channel {channel.status}, agent {agents[0].sid} joined",
            participant_sid=agents[0].sid,
        )
    return Decision(
        Action.CLOSE_CHANNEL,
        Reason.CHANNEL_CLOSED_TASK_OPEN,
        f"channel {channel.status}, no agent of this task joined",
    )


def _judge_conversation(
    refs: Refs, channel: ChannelFacts, evidence: Evidence, *, now: datetime, grace: timedelta
) -> Decision | Need:
    if refs.conversation_sid is None:
        return _leave(
            Reason.CONVERSATION_ACTIVE, f"channel {channel.status}, no conversation to check"
        )
    lookup = Lookup(Look.CONVERSATION, refs.conversation_sid)
    conversation = evidence.get(lookup)
    if conversation is None:
        return Need((lookup,))
    if isinstance(conversation, Missing):
        return _leave(
            conversation.reason,
            f"conversation {refs.conversation_sid}: {conversation.reason.label}",
        )
    if not isinstance(conversation, ConversationFacts):
        return _leave(Reason.CONVERSATION_LOOKUP_FAILED, "unexpected conversation answer")
    if conversation.state != "closed":
        return _leave(
            Reason.CONVERSATION_ACTIVE, f"channel active, conversation {conversation.state}"
        )
    if conversation.date_updated is None:
        return _leave(Reason.CONVERSATION_END_UNKNOWN, "conversation closed, no close time")
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


# ------------------------------------------------------------------ summing evidence up


def evidence_summary(task: TaskRecord, evidence: Evidence) -> tuple[str | None, datetime | None]:
    """(what the evidence says, when it ended) for the plan and the audit log."""
    for lookup, result in evidence.answers:
        if (
            lookup.kind is Look.CALL
            and lookup.sid == task.call_sid
            and isinstance(result, CallFacts)
        ):
            ended = result.ended_at if result.status in TERMINAL_CALL_STATUSES else None
            return result.status, ended
    for lookup, result in evidence.answers:
        if lookup.kind is Look.CONFERENCE and isinstance(result, ConferenceFacts):
            ended = result.date_updated if result.status == "completed" else None
            return f"conference {result.status}", ended
        if (
            lookup.kind is Look.CONFERENCES_NAMED
            and isinstance(result, Conferences)
            and result.found
        ):
            latest = max(result.found, key=lambda c: (c.date_updated is not None, c.date_updated))
            ended = latest.date_updated if latest.status == "completed" else None
            return f"conference {latest.status}", ended
    for lookup, result in evidence.answers:
        if lookup.kind is Look.CHANNEL and isinstance(result, ChannelFacts):
            return f"channel {result.status}", None
    return None, None


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
