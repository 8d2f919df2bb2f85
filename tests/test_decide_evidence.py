"""Issue 6's evidence rules: conferences, participants, Flex Conversations, abandoned wrap-up."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evidence import UNSET, Spec, agent
from stuck_tasks.decide import decide, read_attributes
from stuck_tasks.models import (
    Action,
    CallFacts,
    ChannelFacts,
    ConferenceFacts,
    ConversationFacts,
    Evidence,
    Missing,
    Participants,
    Reason,
    Refs,
    Rules,
    TaskRecord,
)

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=timezone.utc)
RULES = Rules(grace=timedelta(minutes=2), messaging=True, wrapping_after=timedelta(minutes=30))
CA1, CA2, CA3 = ("CA" + c * 32 for c in "123")
CF = "CF" + "4" * 32
KD, UO, CH = "KD" + "5" * 32, "UO" + "6" * 32, "CH" + "7" * 32
UT = "UT" + "8" * 32
TASK = "WT" + "9" * 32
LONG_AGO = NOW - timedelta(minutes=20)


def record(
    attributes: dict | str,
    status: str = "assigned",
    channel: str = "voice",
    updated: datetime | None = None,
) -> TaskRecord:
    raw = attributes if isinstance(attributes, str) else json.dumps(attributes)
    found = read_attributes(raw)
    return TaskRecord(
        sid=TASK,
        status=status,
        channel=channel,
        date_updated=updated,
        refs=found if isinstance(found, Refs) else None,
        attributes_problem=found if isinstance(found, Reason) else None,
    )


def ended(sid: str, status: str = "completed", at: datetime = LONG_AGO) -> CallFacts:
    return CallFacts(sid, status, at, at)


def live(sid: str) -> CallFacts:
    return CallFacts(sid, "in-progress", None, None)


def conference(status: str, at: datetime = LONG_AGO) -> ConferenceFacts:
    return ConferenceFacts(CF, status, at)


OUTBOUND = {"outbound_to": "+15550100", "from": "+15550199", "direction": "outbound"}
WITH_CONF = {
    **OUTBOUND,
    "conference": {"sid": CF, "participants": {"customer": CA1, "worker": CA2}},
}
PARTICIPANTS_ONLY = {**OUTBOUND, "conference": {"participants": {"customer": CA1, "worker": CA2}}}
MESSAGING = {
    "flexInteractionSid": KD,
    "flexInteractionChannelSid": UO,
    "conversationSid": CH,
    "channelType": "chat",
}

# fmt: off
TABLE = [
    # id, attributes, status, channel, evidence, action, reason
    ("conference completed, both legs ended", WITH_CONF, "assigned", "voice",
     Spec(conference=conference("completed"), participant_calls=(ended(CA1), ended(CA2))), Action.COMPLETE, Reason.CALL_ENDED),
    ("conference still in progress", WITH_CONF, "assigned", "voice",
     Spec(conference=conference("in-progress"), participant_calls=(ended(CA1), ended(CA2))), Action.LEAVE, Reason.CONFERENCE_LIVE),
    ("conference completed but a leg is live", WITH_CONF, "assigned", "voice",
     Spec(conference=conference("completed"), participant_calls=(ended(CA1), live(CA2))), Action.LEAVE, Reason.CALL_LIVE),
    ("conference completed inside the grace period", WITH_CONF, "assigned", "voice",
     Spec(conference=conference("completed", NOW - timedelta(seconds=30)), participant_calls=(ended(CA1), ended(CA2))), Action.LEAVE, Reason.CALL_ENDED_IN_GRACE),
    ("conference not found", WITH_CONF, "assigned", "voice",
     Spec(conference=Missing(Reason.CONFERENCE_NOT_FOUND, 20404), participant_calls=(ended(CA1), ended(CA2))), Action.LEAVE, Reason.CONFERENCE_NOT_FOUND),
    ("participants only, all ended", PARTICIPANTS_ONLY, "reserved", "voice",
     Spec(participant_calls=(ended(CA1, "busy"), ended(CA2))), Action.CANCEL, Reason.CALL_ENDED),
    ("participants only, one not found", PARTICIPANTS_ONLY, "assigned", "voice",
     Spec(participant_calls=(ended(CA1), Missing(Reason.CALL_NOT_FOUND, 20404))), Action.LEAVE, Reason.CALL_NOT_FOUND),
    ("call ended but its conference is live (a transfer)", {"call_sid": CA3, "conference": {"sid": CF}}, "assigned", "voice",
     Spec(call=ended(CA3), conference=conference("in-progress")), Action.LEAVE, Reason.CONFERENCE_LIVE),
    ("call ended and its conference completed", {"call_sid": CA3, "conference": {"sid": CF}}, "assigned", "voice",
     Spec(call=ended(CA3), conference=conference("completed")), Action.COMPLETE, Reason.CALL_ENDED),
    ("no SID: the conference named after the task completed", OUTBOUND, "assigned", "voice",
     Spec(conference=conference("completed")), Action.COMPLETE, Reason.CALL_ENDED),
    ("no SID: the conference named after the task is live", OUTBOUND, "pending", "voice",
     Spec(conference=conference("init")), Action.LEAVE, Reason.CONFERENCE_LIVE),
    ("no SID and no conference anywhere", OUTBOUND, "assigned", "voice",
     Spec(conference=Missing(Reason.CONFERENCE_NOT_FOUND)), Action.LEAVE, Reason.NO_EVIDENCE),
    ("conference attributes malformed", {"conference": "CF123"}, "assigned", "voice",
     Spec(), Action.LEAVE, Reason.CONFERENCE_MALFORMED),
    ("participant value not a call SID", {"conference": {"participants": {"customer": 5}}}, "assigned", "voice",
     Spec(), Action.LEAVE, Reason.CONFERENCE_MALFORMED),
    # Flex Conversations
    ("channel closed, agent participant still joined", MESSAGING, "assigned", "chat",
     Spec(channel=ChannelFacts(UO, "closed"), agent=agent(UT, TASK)), Action.CLOSE_PARTICIPANT, Reason.CHANNEL_CLOSED),
    ("channel inactive, agent still joined", MESSAGING, "assigned", "sms",
     Spec(channel=ChannelFacts(UO, "inactive"), agent=agent(UT, TASK)), Action.CLOSE_PARTICIPANT, Reason.CHANNEL_CLOSED),
    ("channel closed, no agent of the task joined (a reserved task)", MESSAGING, "reserved", "chat",
     Spec(channel=ChannelFacts(UO, "closed"), agent=None), Action.CLOSE_CHANNEL, Reason.CHANNEL_CLOSED_TASK_OPEN),
    ("channel closed, participants not looked up yet", MESSAGING, "pending", "chat",
     Spec(channel=ChannelFacts(UO, "closed")), Action.LEAVE, Reason.EVIDENCE_NOT_CHECKED),
    ("channel closed, two agents name the task", MESSAGING, "assigned", "chat",
     Spec(channel=ChannelFacts(UO, "closed"), participants=Participants((agent(UT, TASK), agent("UT" + "7" * 32, TASK)))), Action.LEAVE, Reason.AGENT_AMBIGUOUS),
    ("channel closed, participant lookup failed", MESSAGING, "assigned", "chat",
     Spec(channel=ChannelFacts(UO, "closed"), participants=Missing(Reason.CHANNEL_LOOKUP_FAILED, 20500)), Action.LEAVE, Reason.CHANNEL_LOOKUP_FAILED),
    ("conversation closed, channel still active", MESSAGING, "assigned", "chat",
     Spec(channel=ChannelFacts(UO, "active"), conversation=ConversationFacts(CH, "closed", LONG_AGO)), Action.CLOSE_CHANNEL, Reason.CONVERSATION_CLOSED),
    ("conversation closed seconds ago", MESSAGING, "assigned", "chat",
     Spec(channel=ChannelFacts(UO, "active"), conversation=ConversationFacts(CH, "closed", NOW - timedelta(seconds=10))), Action.LEAVE, Reason.CONVERSATION_CLOSED_IN_GRACE),
    ("conversation and channel active", MESSAGING, "assigned", "chat",
     Spec(channel=ChannelFacts(UO, "active"), conversation=ConversationFacts(CH, "active", LONG_AGO)), Action.LEAVE, Reason.CONVERSATION_ACTIVE),
    ("conversation inactive is not closed", MESSAGING, "assigned", "chat",
     Spec(channel=ChannelFacts(UO, "active"), conversation=ConversationFacts(CH, "inactive", LONG_AGO)), Action.LEAVE, Reason.CONVERSATION_ACTIVE),
    ("channel in transfer", MESSAGING, "assigned", "chat",
     Spec(channel=ChannelFacts(UO, "transfer")), Action.LEAVE, Reason.CHANNEL_NOT_CLOSABLE),
    ("channel not found", MESSAGING, "assigned", "chat",
     Spec(channel=Missing(Reason.CHANNEL_NOT_FOUND, 20404)), Action.LEAVE, Reason.CHANNEL_NOT_FOUND),
    ("a conversation task with no interaction SIDs", {"conversationSid": CH}, "assigned", "chat",
     Spec(), Action.LEAVE, Reason.NO_INTERACTION),
    ("legacy Programmable Chat", {"channelSid": "CH" + "1" * 32}, "assigned", "chat",
     Spec(), Action.LEAVE, Reason.LEGACY_CHAT),
    ("unknown messaging shape", {"foo": 1}, "assigned", "sms",
     Spec(), Action.LEAVE, Reason.UNKNOWN_MESSAGING),
    ("malformed interaction SID", {"flexInteractionSid": "KD1", "flexInteractionChannelSid": UO}, "assigned", "chat",
     Spec(), Action.LEAVE, Reason.MESSAGING_REFS_MALFORMED),
    # Abandoned wrap-up (opted in by RULES)
    ("wrapping, call ended an hour ago", {"call_sid": CA1}, "wrapping", "voice",
     Spec(call=ended(CA1, at=NOW - timedelta(hours=1))), Action.COMPLETE, Reason.WRAPPING_ABANDONED),
    ("wrapping, call ended 5 minutes ago", {"call_sid": CA1}, "wrapping", "voice",
     Spec(call=ended(CA1, at=NOW - timedelta(minutes=5))), Action.LEAVE, Reason.WRAPPING_RECENT),
    ("wrapping, call still live", {"call_sid": CA1}, "wrapping", "voice",
     Spec(call=live(CA1)), Action.LEAVE, Reason.CALL_LIVE),
    ("wrapping messaging task is never touched", MESSAGING, "wrapping", "chat",
     Spec(), Action.LEAVE, Reason.TASK_NOT_OPEN),
]
# fmt: on


@pytest.mark.parametrize(
    ("name", "attributes", "status", "channel", "evidence", "action", "reason"),
    TABLE,
    ids=[row[0] for row in TABLE],
)
def test_evidence_table(name, attributes, status, channel, evidence, action, reason):
    task = record(attributes, status, channel)
    decision = decide(task, evidence.of(task), now=NOW, rules=RULES)
    assert (decision.action, decision.reason) == (action, reason), decision.detail


def test_wrapping_without_a_call_counts_from_the_last_update():
    old = record(OUTBOUND, "wrapping", updated=NOW - timedelta(hours=2))
    fresh = record(OUTBOUND, "wrapping", updated=NOW - timedelta(minutes=2))
    assert decide(old, Evidence(), now=NOW, rules=RULES).reason is Reason.WRAPPING_ABANDONED
    assert decide(fresh, Evidence(), now=NOW, rules=RULES).reason is Reason.WRAPPING_RECENT


def test_wrapping_is_left_alone_unless_opted_in():
    task = record({"call_sid": CA1}, "wrapping")
    evidence = Spec(call=ended(CA1, at=NOW - timedelta(hours=5))).of(task)
    decision = decide(task, evidence, now=NOW, rules=Rules(grace=timedelta(minutes=2)))
    assert decision.reason is Reason.TASK_NOT_OPEN


def test_messaging_tasks_are_not_voice_unless_opted_in():
    task = record(MESSAGING, "assigned", "chat")
    evidence = Spec(channel=ChannelFacts(UO, "closed"), agent=agent(UT, TASK)).of(task)
    assert (
        decide(task, evidence, now=NOW, rules=Rules(grace=timedelta(minutes=2))).reason
        is Reason.NOT_VOICE
    )


sids = st.sampled_from([CA1, CA2, CA3])
call_results = st.one_of(
    st.builds(
        CallFacts,
        sids,
        st.sampled_from(["completed", "busy", "in-progress", "ringing", "canceled"]),
        st.just(LONG_AGO),
        st.just(LONG_AGO),
    ),
    st.builds(Missing, st.sampled_from([Reason.CALL_NOT_FOUND, Reason.CALL_LOOKUP_FAILED])),
)
messaging_evidence = st.builds(
    Spec,
    participants=st.just(UNSET) | st.just(Missing(Reason.CHANNEL_LOOKUP_FAILED)),
    channel=st.none()
    | st.builds(
        ChannelFacts,
        st.just(UO),
        st.sampled_from(["setup", "active", "failed", "closed", "inactive", "pause", "transfer"]),
    ),
    conversation=st.none()
    | st.builds(
        ConversationFacts,
        st.just(CH),
        st.sampled_from(["initializing", "inactive", "active", "closed"]),
        st.just(LONG_AGO),
    ),
    agent=st.just(UNSET) | st.none() | st.just(agent(UT, TASK)),
    call=st.none() | call_results,
)
messaging_attributes = st.fixed_dictionaries(
    {},
    optional={
        "flexInteractionSid": st.sampled_from([KD, "KD1", 3]),
        "flexInteractionChannelSid": st.sampled_from([UO, "UO"]),
        "conversationSid": st.sampled_from([CH, None]),
        "channelSid": st.just("CH" + "2" * 32),
        "call_sid": st.just(CA1),
    },
)


@given(
    attributes=messaging_attributes,
    status=st.sampled_from(["pending", "reserved", "assigned", "wrapping", "completed"]),
    channel=st.sampled_from(["chat", "sms", "whatsapp", "email", "default"]),
    evidence=messaging_evidence,
)
def test_a_messaging_task_is_never_closed_through_the_task_api(
    attributes, status, channel, evidence
):
    task = record(attributes, status, channel)
    decision = decide(task, evidence.of(task), now=NOW, rules=RULES)
    assert decision.action not in (Action.CANCEL, Action.COMPLETE)
    if decision.acts:
        assert task.status in {"pending", "reserved", "assigned"}
        assert isinstance(evidence.channel, ChannelFacts)
        if decision.action is Action.CLOSE_PARTICIPANT:
            assert evidence.channel.status in {"closed", "inactive"}
            assert evidence.agent is not None
            assert evidence.agent is not UNSET
            assert decision.participant_sid == UT
        elif evidence.channel.status in {"closed", "inactive"}:
            assert decision.reason is Reason.CHANNEL_CLOSED_TASK_OPEN
            assert evidence.agent is None  # no agent of this task joined
        else:
            assert evidence.channel.status == "active"
            assert isinstance(evidence.conversation, ConversationFacts)
            assert evidence.conversation.state == "closed"


@given(
    conf=st.none()
    | st.builds(
        ConferenceFacts,
        st.just(CF),
        st.sampled_from(["init", "in-progress", "completed"]),
        st.just(LONG_AGO),
    ),
    calls=st.lists(call_results, min_size=2, max_size=2),
    call=st.none() | call_results,
)
def test_any_live_or_unknown_voice_evidence_leaves_the_task(conf, calls, call):
    attributes = {
        "call_sid": CA3,
        "conference": {"sid": CF, "participants": {"customer": CA1, "worker": CA2}},
    }
    task = record(attributes)
    evidence = Spec(call=call, conference=conf, participant_calls=tuple(calls)).of(task)
    decision = decide(task, evidence, now=NOW, rules=RULES)
    pieces = [call, conf, *calls]
    all_over = all(
        (isinstance(p, CallFacts) and p.status in {"completed", "busy", "canceled"})
        or (isinstance(p, ConferenceFacts) and p.status == "completed")
        for p in pieces
    )
    assert decision.acts == all_over
