"""Build ``Evidence`` for decision tests by role (the call, the conference, the agent, ...).

The decision module keys evidence by the lookup that produced it; tables read better by role,
so ``spec(...).of(task)`` turns roles into the lookups the task's attributes name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stuck_tasks.models import (
    CallFacts,
    ChannelFacts,
    ConferenceFacts,
    Conferences,
    ConversationFacts,
    Evidence,
    Look,
    Lookup,
    Missing,
    ParticipantFacts,
    Participants,
    Result,
    TaskRecord,
)

UNSET = object()


@dataclass(frozen=True)
class Spec:
    call: object = UNSET
    conference: object = UNSET  # by SID, or (no SID in the attributes) the one named after the task
    participant_calls: tuple[object, ...] = ()
    channel: object = UNSET
    agent: object = UNSET  # a ParticipantFacts of this task's agent, None for "no agent joined"
    participants: object = UNSET  # a whole Participants (or Missing) instead of ``agent``
    conversation: object = UNSET
    extra: dict[Lookup, Result] = field(default_factory=dict)

    def of(self, task: TaskRecord) -> Evidence:
        refs = task.refs
        found: dict[Lookup, Result] = dict(self.extra)
        if refs is None:
            return Evidence.of(found)
        if self.call is not UNSET and self.call is not None and refs.call_sid:
            found[Lookup(Look.CALL, refs.call_sid)] = self.call  # type: ignore[assignment]
        if self.conference is not UNSET and self.conference is not None:
            if refs.conference_sid:
                found[Lookup(Look.CONFERENCE, refs.conference_sid)] = self.conference  # type: ignore[assignment]
            else:
                found.update(_named(task.sid, self.conference))
        extra = [c for c in refs.participant_calls if c != refs.call_sid]
        for sid, result in zip(extra, self.participant_calls, strict=False):
            if result is not None:
                found[Lookup(Look.CALL, sid)] = result  # type: ignore[assignment]
        if refs.channel_sid and refs.interaction_sid:
            kd, uo = refs.interaction_sid, refs.channel_sid
            if self.channel is not UNSET and self.channel is not None:
                found[Lookup(Look.CHANNEL, uo, parent=kd)] = self.channel  # type: ignore[assignment]
            members: object = self.participants
            if members is UNSET and self.agent is not UNSET:
                customer = ParticipantFacts("UT" + "c" * 32, "customer")
                agents = () if self.agent is None else (self.agent,)
                members = Participants((customer, *agents))  # type: ignore[arg-type]
            if members is not UNSET and members is not None:
                found[Lookup(Look.PARTICIPANTS, uo, parent=kd)] = members  # type: ignore[assignment]
        if (
            self.conversation is not UNSET
            and self.conversation is not None
            and refs.conversation_sid
        ):
            found[Lookup(Look.CONVERSATION, refs.conversation_sid)] = self.conversation  # type: ignore[assignment]
        return Evidence.of(found)


def _named(task_sid: str, conference: object) -> dict[Lookup, Result]:
    """The three status lookups for the conference named after the task."""
    answers: dict[str, Result] = {s: Conferences(()) for s in ("in-progress", "init", "completed")}
    if isinstance(conference, ConferenceFacts):
        answers[conference.status] = Conferences((conference,))
    elif isinstance(conference, Missing) and conference.reason.value == "conference-not-found":
        pass  # none named after the task, in any status
    elif isinstance(conference, Missing):
        answers = {"in-progress": conference}
    return {Lookup(Look.CONFERENCES_NAMED, task_sid, status=s): r for s, r in answers.items()}


def agent(sid: str, task_sid: str) -> ParticipantFacts:
    return ParticipantFacts(sid, "agent", (task_sid, "WK" + "1" * 32))


__all__ = [
    "CallFacts",
    "ChannelFacts",
    "ConferenceFacts",
    "ConversationFacts",
    "Spec",
    "agent",
]
