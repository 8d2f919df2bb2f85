"""The decision function: a table of cases, then properties."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evidence import Spec
from stuck_tasks.decide import decide as decide_with_rules
from stuck_tasks.decide import format_age, read_attributes
from stuck_tasks.models import (
    LIVE_CALL_STATUSES,
    OPEN_STATUSES,
    TERMINAL_CALL_STATUSES,
    Action,
    CallFacts,
    Missing,
    Reason,
    Refs,
    Rules,
    TaskRecord,
)

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=timezone.utc)
GRACE = timedelta(minutes=2)
CA = "CA" + "ab" * 16


def task(
    status: str = "pending", channel: str = "voice", attributes: str | None = None
) -> TaskRecord:
    raw = f'{{"call_sid": "{CA}"}}' if attributes is None else attributes
    found = read_attributes(raw)
    return TaskRecord(
        sid="WT" + "0" * 32,
        status=status,
        channel=channel,
        refs=found if isinstance(found, Refs) else None,
        attributes_problem=found if isinstance(found, Reason) else None,
    )


def decide(record, call, *, now, grace):
    """The voice-by-call_sid slice of the decision (the other evidence has its own tables)."""
    return decide_with_rules(record, Spec(call=call).of(record), now=now, rules=Rules(grace=grace))


def call(
    status: str, ended_ago: timedelta | None = timedelta(minutes=10), *, end_time: bool = True
) -> CallFacts:
    moment = NOW - ended_ago if ended_ago is not None else None
    return CallFacts(CA, status, moment if end_time else None, moment)


# fmt: off
TABLE = [
    # task status, channel, attributes, call evidence -> action, reason
    ("pending",  "voice", None, call("completed"),                  Action.CANCEL,   Reason.CALL_ENDED),
    ("reserved", "voice", None, call("busy", end_time=False),       Action.CANCEL,   Reason.CALL_ENDED),
    ("assigned", "voice", None, call("no-answer", end_time=False),  Action.COMPLETE, Reason.CALL_ENDED),
    ("assigned", "voice", None, call("failed", end_time=False),     Action.COMPLETE, Reason.CALL_ENDED),
    ("pending",  "voice", None, call("canceled", end_time=False),   Action.CANCEL,   Reason.CALL_ENDED),
    ("assigned", "voice", None, call("in-progress", None),          Action.LEAVE,    Reason.CALL_LIVE),
    ("pending",  "voice", None, call("ringing", None),              Action.LEAVE,    Reason.CALL_LIVE),
    ("pending",  "voice", None, call("queued", None),               Action.LEAVE,    Reason.CALL_LIVE),
    ("pending",  "voice", None, call("completed", timedelta(seconds=30)), Action.LEAVE, Reason.CALL_ENDED_IN_GRACE),
    ("pending",  "voice", None, call("completed", timedelta(seconds=-30)), Action.LEAVE, Reason.CALL_ENDED_IN_GRACE),
    ("pending",  "voice", None, call("completed", None),            Action.LEAVE,    Reason.CALL_END_UNKNOWN),
    ("pending",  "voice", None, call("transferring"),               Action.LEAVE,    Reason.CALL_STATUS_UNKNOWN),
    ("pending",  "voice", None, Missing(Reason.CALL_NOT_FOUND, 20404), Action.LEAVE, Reason.CALL_NOT_FOUND),
    ("pending",  "voice", None, Missing(Reason.CALL_LOOKUP_FAILED, 20500), Action.LEAVE, Reason.CALL_LOOKUP_FAILED),
    ("pending",  "voice", None, None,                               Action.LEAVE,    Reason.CALL_NOT_CHECKED),
    ("pending",  "voice", '{"from": "+1555"}', None,                Action.LEAVE,    Reason.CALL_NOT_CHECKED),
    ("pending",  "voice", "{}", None,                               Action.LEAVE,    Reason.CALL_NOT_CHECKED),
    ("pending",  "voice", '{"call_sid": null}', None,               Action.LEAVE,    Reason.CALL_NOT_CHECKED),
    ("pending",  "voice", '{"call_sid": "CA', None,                 Action.LEAVE,    Reason.ATTRIBUTES_NOT_JSON),
    ("pending",  "voice", "[1, 2]", None,                           Action.LEAVE,    Reason.ATTRIBUTES_NOT_OBJECT),
    ("pending",  "voice", "42", None,                               Action.LEAVE,    Reason.ATTRIBUTES_NOT_OBJECT),
    ("pending",  "voice", '{"call_sid": 42}', None,                 Action.LEAVE,    Reason.CALL_SID_NOT_STRING),
    ("pending",  "voice", '{"call_sid": "not-a-sid"}', None,        Action.LEAVE,    Reason.CALL_SID_MALFORMED),
    ("pending",  "chat",  None, call("completed"),                  Action.LEAVE,    Reason.NOT_VOICE),
    ("assigned", "sms",   None, call("completed"),                  Action.LEAVE,    Reason.NOT_VOICE),
    ("wrapping", "voice", None, call("completed"),                  Action.LEAVE,    Reason.TASK_NOT_OPEN),
    ("completed", "voice", None, call("completed"),                 Action.LEAVE,    Reason.TASK_NOT_OPEN),
    ("canceled", "voice", None, call("completed"),                  Action.LEAVE,    Reason.TASK_NOT_OPEN),
]
# fmt: on


@pytest.mark.parametrize(("status", "channel", "attributes", "evidence", "action", "reason"), TABLE)
def test_decision_table(status, channel, attributes, evidence, action, reason):
    decision = decide(task(status, channel, attributes), evidence, now=NOW, grace=GRACE)
    assert (decision.action, decision.reason) == (action, reason), decision.detail


def test_the_grace_boundary_allows_for_whole_second_timestamps():
    # Twilio stamps whole seconds: a call stamped exactly --grace ago may have ended up to a
    # second later, so it is left; a second more and it is proof.
    at_boundary = decide(task(), call("completed", GRACE), now=NOW, grace=GRACE)
    assert at_boundary.reason is Reason.CALL_ENDED_IN_GRACE
    past = decide(task(), call("completed", GRACE + timedelta(seconds=1)), now=NOW, grace=GRACE)
    assert past.action is Action.CANCEL


def test_unread_attributes_never_act():
    record = TaskRecord(sid="WT" + "0" * 32, status="pending", channel="voice")
    assert not record.attributes_read
    assert decide(record, call("completed"), now=NOW, grace=GRACE).action is Action.LEAVE


def test_a_canceled_call_counts_as_ended_unlike_the_seed_script():
    assert "canceled" in TERMINAL_CALL_STATUSES
    assert decide(task("reserved"), call("canceled"), now=NOW, grace=GRACE).action is Action.CANCEL


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (59, "59s"),
        (60, "1m"),
        (3599, "59m"),
        (3660, "1h01m"),
        (200000, "2d07h"),
        (-5, "-5s"),
    ],
)
def test_format_age(seconds, text):
    assert format_age(seconds) == text


# ------------------------------------------------------------------ properties

statuses = st.sampled_from([*OPEN_STATUSES, "wrapping", "completed", "canceled", "?"])
channels = st.sampled_from(["voice", "chat", "sms", "default", "", "Voice"])
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
)
attributes = (
    st.none()
    | st.text(max_size=60)
    | st.builds(
        lambda v: f'{{"call_sid": {v}}}',
        st.sampled_from(['"' + CA + '"', "1", "null", "[]", '"CA1"']),
    )
    | st.recursive(
        json_scalars,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=6,
    ).map(lambda v: __import__("json").dumps(v))
)
call_statuses = st.sampled_from(sorted(LIVE_CALL_STATUSES | TERMINAL_CALL_STATUSES | {"", "weird"}))
moments = st.none() | st.integers(min_value=-86400, max_value=86400 * 3).map(
    lambda s: NOW - timedelta(seconds=s)
)
calls = (
    st.none()
    | st.builds(
        Missing,
        st.sampled_from([Reason.CALL_NOT_FOUND, Reason.CALL_LOOKUP_FAILED]),
        st.none() | st.integers(),
    )
    | st.builds(CallFacts, st.just(CA), call_statuses, moments, moments)
)
graces = st.integers(min_value=0, max_value=3600).map(lambda s: timedelta(seconds=s))


@given(status=statuses, channel=channels, attrs=attributes, evidence=calls, grace=graces)
def test_decide_is_total_deterministic_and_acts_only_on_proof(
    status, channel, attrs, evidence, grace
):
    record = task(status, channel, attrs if attrs is not None else "{}")
    first = decide(record, evidence, now=NOW, grace=grace)
    assert first == decide(record, evidence, now=NOW, grace=grace)
    if not first.acts:
        return
    # Proof required for any action:
    assert record.status in OPEN_STATUSES
    assert record.channel == "voice"
    assert record.attributes_problem is None
    assert isinstance(evidence, CallFacts)
    assert evidence.status in TERMINAL_CALL_STATUSES
    assert evidence.ended_at is not None
    assert NOW - evidence.ended_at >= grace
    expected = Action.COMPLETE if record.status == "assigned" else Action.CANCEL
    assert first.action is expected


@given(attrs=st.text(max_size=200) | st.binary(max_size=50).map(lambda b: b.decode("latin-1")))
def test_reading_attributes_never_raises(attrs):
    assert isinstance(read_attributes(attrs), Refs | Reason)


@given(evidence=calls, grace=graces)
def test_never_acts_on_a_live_call(evidence, grace):
    decision = decide(task("assigned"), evidence, now=NOW, grace=grace)
    if isinstance(evidence, CallFacts) and evidence.status in LIVE_CALL_STATUSES:
        assert decision.action is Action.LEAVE
        assert decision.reason is Reason.CALL_LIVE
