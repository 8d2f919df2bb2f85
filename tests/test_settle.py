"""The settle loop over a scripted fake gateway: each outcome in milliseconds, no network."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from fakes import NOW, WS, FakeGateway, scripted, sid, voice_task
from stuck_tasks.errors import (
    ApiError,
    AuthError,
    BadResponse,
    DeadlineExceeded,
    NotFound,
    TransportError,
)
from stuck_tasks.models import (
    Action,
    Case,
    Decision,
    Outcome,
    Reason,
    Refs,
    TaskRecord,
    Written,
)
from stuck_tasks.ratecontrol import Metrics, Reads, RetryPolicy, Stop
from stuck_tasks.settle import Settler

REASON = "Orchestration issue (stuck-tasks run T)"
FAST = RetryPolicy(attempts=3, base=0.001, cap=0.002)


def case(task: TaskRecord | None = None, action: Action = Action.CANCEL) -> Case:
    task = task or voice_task(1)
    return Case(task, Decision(action, Reason.CALL_ENDED, "call ended 10m ago"))


def settle(handler, the_case: Case | None = None, *, stop: Stop | None = None, **settler):
    gw = FakeGateway(handler)
    reads = Reads(replace(FAST, deadline=time.monotonic() + 10), Metrics(), stop or Stop())
    result = asyncio.run(Settler(gw, WS, REASON, reads, **settler).settle(the_case or case()))
    return result, gw


def ours(task: TaskRecord, status: str = "canceled") -> TaskRecord:
    return replace(task, status=status, twilio_reason=REASON, etag="9")


def test_a_clean_write_is_closed_with_if_match_of_the_planning_read():
    result, gw = settle(scripted(update_task=[Written("canceled", "2")]))
    assert (result.outcome, result.why, result.attempts) == (Outcome.CLOSED, "closed", 1)
    assert gw.calls[0].args["if_match"] == "1"
    assert gw.methods() == ["update_task"]


def test_timeout_then_412_then_a_read_showing_our_reason_is_closed():
    # The first try timed out after reaching Twilio; it landed late, so the retry's If-Match
    # fails: the task, read again, shows our status and our Reason.
    task = voice_task(1)
    result, gw = settle(
        scripted(
            update_task=[
                TransportError("no answer", sent=True),
                ApiError(412, 20412, "Precondition Failed"),
            ],
            fetch_task=[task, ours(task)],
        )
    )
    assert (result.outcome, result.why) == (Outcome.CLOSED, "closed")
    assert "confirmed by re-read" in result.detail
    assert gw.methods() == ["update_task", "fetch_task", "update_task", "fetch_task"]


def test_a_412_without_an_earlier_try_is_skipped_not_failed():
    task = voice_task(1)
    result, gw = settle(
        scripted(
            update_task=[ApiError(412, 20412, "Precondition Failed")],
            fetch_task=[replace(task, etag="5", twilio_reason="an agent")],
        )
    )
    assert (result.outcome, result.why) == (Outcome.SKIPPED, "changed-412")
    assert gw.methods() == ["update_task", "fetch_task"]  # the refusal is checked by a read


@pytest.mark.parametrize(
    "refusal",
    [
        NotFound(404, 20404, "gone"),
        ApiError(400, 20001, "Cannot cancel"),
        ApiError(412, 20412, "x"),
        ApiError(400, 80906, "not a strategy's refusal"),
        ApiError(400, None, "no code at all"),
    ],
)
def test_a_refusal_for_a_write_that_landed_is_closed_not_skipped(refusal):
    # Something in between (a proxy) answered a refusal for a write Twilio applied.
    task = voice_task(1)
    result, _ = settle(scripted(update_task=[refusal], fetch_task=[ours(task)]))
    assert (result.outcome, result.why) == (Outcome.CLOSED, "closed")


def test_a_401_to_a_write_stops_the_run_and_the_write_is_unknown_not_untried():
    stop = Stop()
    result, _ = settle(scripted(update_task=[AuthError(401, 20003, "Authenticate")]), stop=stop)
    assert result.outcome is Outcome.UNKNOWN
    assert isinstance(stop.error, AuthError)


def test_a_plain_400_the_task_does_not_contradict_is_failed_after_one_read():
    task = voice_task(1)
    result, gw = settle(scripted(update_task=[ApiError(400, 20002, "Invalid")], fetch_task=[task]))
    assert (result.outcome, result.why, result.attempts) == (Outcome.FAILED, "error-20002", 1)
    assert gw.methods() == ["update_task", "fetch_task"]


def test_5xx_every_time_is_failed_after_the_task_is_read_back():
    task = voice_task(1)
    result, gw = settle(
        scripted(
            update_task=[ApiError(503, 20503, "Service Unavailable")],
            fetch_task=[task],
        )
    )
    assert (result.outcome, result.why, result.attempts) == (Outcome.FAILED, "error-20503", 3)
    # No blind re-POST: every retry comes after a read, and the last read settles the record.
    assert gw.methods() == [
        "update_task", "fetch_task", "update_task", "fetch_task", "update_task", "fetch_task",
    ]  # fmt: skip


def test_5xx_that_landed_on_the_last_try_is_closed_not_failed():
    task = voice_task(1)
    result, _ = settle(
        scripted(
            update_task=[ApiError(503, 20503, "Service Unavailable")],
            fetch_task=[task, task, ours(task)],
        )
    )
    assert result.outcome is Outcome.CLOSED


def test_an_html_200_to_a_write_is_settled_by_reading_the_task():
    task = voice_task(1)
    result, gw = settle(
        scripted(
            update_task=[BadResponse("Twilio's answer could not be read (JSONDecodeError)")],
            fetch_task=[ours(task)],
        )
    )
    assert (result.outcome, result.why) == (Outcome.CLOSED, "closed")
    assert gw.methods() == ["update_task", "fetch_task"]


def test_a_garbled_answer_then_an_unreadable_task_is_unknown_never_failed_or_closed():
    result, _ = settle(
        scripted(
            update_task=[BadResponse("cut off")],
            fetch_task=[BadResponse("cut off too")],
        )
    )
    assert result.outcome is Outcome.UNKNOWN


def test_stop_before_the_first_send_is_not_attempted():
    stop = Stop()
    stop.interrupt()
    result, gw = settle(scripted(), stop=stop)
    assert (result.outcome, result.why) == (Outcome.NOT_ATTEMPTED, "interrupted")
    assert gw.calls == []


def test_stop_after_a_send_still_settles_the_write():
    stop = Stop()
    task = voice_task(1)

    def update(call):
        stop.interrupt()  # Ctrl-C while the write is in flight
        return TransportError("dropped", sent=True)

    result, gw = settle(lambda c: update(c) if c.method == "update_task" else ours(task), stop=stop)
    assert result.outcome is Outcome.CLOSED
    assert gw.methods() == ["update_task", "fetch_task"]


def test_401_mid_write_stops_the_run_and_a_sent_write_is_unknown():
    stop = Stop()
    result, _ = settle(
        scripted(
            update_task=[TransportError("no answer", sent=True)],
            fetch_task=[AuthError(401, 20003, "Authenticate")],
        ),
        stop=stop,
    )
    assert result.outcome is Outcome.UNKNOWN
    assert isinstance(stop.error, AuthError)


def test_429_is_retried_beyond_the_attempt_limit_while_time_remains():
    throttled = [ApiError(429, 20429, "Too Many Requests")] * 10
    result, gw = settle(scripted(update_task=[*throttled, Written("canceled", "2")]))
    assert (result.outcome, result.attempts) == (Outcome.CLOSED, 11)
    assert "fetch_task" not in gw.methods()  # a 429 was never processed: nothing to settle


def test_the_task_changed_before_a_confirmed_plan_is_applied_is_skipped():
    task = voice_task(1)
    result, gw = settle(scripted(fetch_task=[replace(task, status="wrapping")]), fresh_first=True)
    assert (result.outcome, result.why, result.status_after) == (
        Outcome.SKIPPED, "now-wrapping", "wrapping",
    )  # fmt: skip
    assert gw.methods() == ["fetch_task"]


def test_fresh_first_writes_when_the_task_is_as_it_was_decided():
    task = voice_task(1)
    result, gw = settle(
        scripted(fetch_task=[task], update_task=[Written("canceled", "8")]), fresh_first=True
    )
    assert result.outcome is Outcome.CLOSED
    assert gw.calls[1].args["if_match"] == task.etag


def test_a_task_that_changed_in_any_way_since_it_was_decided_is_skipped_not_written():
    # Minutes passed between the plan and its confirmation, and the task changed (its ETag) in
    # a way the status and the evidence do not show: an agent updated a wrapping task that was
    # judged abandoned on its date_updated, say. Writing with the fresh ETag would overwrite it.
    task = voice_task(1, "assigned")
    later = NOW - timedelta(seconds=5)
    fresh = replace(task, etag="7", date_updated=later)
    result, gw = settle(scripted(fetch_task=[fresh]), case(task, Action.COMPLETE), fresh_first=True)
    assert (result.outcome, result.why) == (Outcome.SKIPPED, "changed-since-read")
    assert gw.methods() == ["fetch_task"]


def test_a_listed_task_without_an_etag_that_changed_since_its_row_is_skipped():
    task = replace(voice_task(1), etag=None)
    fresh = replace(task, etag="4", date_updated=NOW - timedelta(seconds=5))
    result, gw = settle(scripted(fetch_task=[fresh]), case(task))
    assert (result.outcome, result.why) == (Outcome.SKIPPED, "changed-since-read")
    assert gw.methods() == ["fetch_task"]


def test_an_interaction_write_is_skipped_when_the_task_changed_before_it():
    the_case = messaging_case()
    result, gw = settle(scripted(fetch_task=[replace(the_case.task, etag="8")]), the_case)
    assert (result.outcome, result.why) == (Outcome.SKIPPED, "changed-since-read")
    assert gw.methods() == ["fetch_task"]


def test_a_task_gone_before_the_write_is_skipped():
    result, _ = settle(scripted(fetch_task=[NotFound(404, 20404, "gone")]), fresh_first=True)
    assert (result.outcome, result.why) == (Outcome.SKIPPED, "gone-404")


def test_no_etag_from_the_list_means_a_read_first_for_one():
    task = replace(voice_task(1), etag=None)
    result, gw = settle(
        scripted(fetch_task=[replace(task, etag="4")], update_task=[Written("canceled", "5")]),
        case(task),
    )
    assert result.outcome is Outcome.CLOSED
    assert gw.calls[1].args["if_match"] == "4"


def test_no_etag_anywhere_means_no_write_at_all():
    task = replace(voice_task(1), etag=None)
    result, gw = settle(scripted(fetch_task=[task]), case(task))
    assert (result.outcome, result.why) == (Outcome.SKIPPED, "no-etag")
    assert gw.methods() == ["fetch_task"]  # never an unconditional update


# ------------------------------------------------------------------ the Interactions strategy

KD, UO, UT = sid("KD", 1), sid("UO", 1), sid("UT", 1)


def messaging_case(action: Action = Action.CLOSE_CHANNEL, status: str = "reserved") -> Case:
    refs = Refs(interaction_sid=KD, channel_sid=UO, conversation_sid=sid("CH", 1))
    task = TaskRecord(sid("WT", 9), status, "chat", refs=refs, etag="3")
    participant = UT if action is Action.CLOSE_PARTICIPANT else None
    return Case(
        task,
        Decision(
            action, Reason.CHANNEL_CLOSED_TASK_OPEN, "channel closed", participant_sid=participant
        ),
    )


@pytest.mark.parametrize(
    ("action", "write"),
    [(Action.CLOSE_CHANNEL, "close_channel"), (Action.CLOSE_PARTICIPANT, "close_participant")],
)
def test_an_interaction_write_reads_the_task_before_and_after(action, write):
    the_case = messaging_case(action)
    closed = replace(the_case.task, status="canceled")
    result, gw = settle(scripted(fetch_task=[the_case.task, closed], **{write: [None]}), the_case)
    assert (result.outcome, result.status_after) == (Outcome.CLOSED, "canceled")
    assert gw.methods() == ["fetch_task", write, "fetch_task"]


def test_80906_interaction_not_open_leaves_the_task_with_its_own_reason():
    the_case = messaging_case()
    result, _ = settle(
        scripted(
            fetch_task=[the_case.task],
            close_channel=[ApiError(400, 80906, "Interaction Not Open")],
        ),
        the_case,
    )
    assert (result.outcome, result.why) == (Outcome.SKIPPED, "interaction-not-open")


def test_80906_after_a_dropped_try_that_closed_the_task_is_closed():
    the_case = messaging_case()
    closed = replace(the_case.task, status="canceled")
    result, _ = settle(
        scripted(
            fetch_task=[the_case.task, the_case.task, closed],
            close_channel=[
                TransportError("dropped", sent=True),
                ApiError(400, 80906, "Interaction Not Open"),
            ],
        ),
        the_case,
    )
    assert result.outcome is Outcome.CLOSED


def test_the_settle_loop_is_one_loop_for_both_kinds():
    # The same 5xx-then-read rules hold for an Interactions write.
    the_case = messaging_case()
    result, gw = settle(
        scripted(
            fetch_task=[the_case.task],
            close_channel=[ApiError(500, 20500, "Internal Server Error")],
        ),
        the_case,
    )
    assert (result.outcome, result.attempts) == (Outcome.FAILED, 3)
    assert gw.methods().count("close_channel") == 3


# ------------------------------------------------------------------ a fatal error after a send


@pytest.mark.parametrize(
    "fatal",
    [AuthError(401, 20003, "Authenticate"), DeadlineExceeded("the run's --deadline passed")],
)
def test_a_fatal_error_reading_back_an_applied_interaction_close_keeps_it_closed(fatal):
    # close_channel was answered 2xx: Twilio applied it. The read for its status after fails
    # fatally (credentials revoked, the deadline): the record must still say closed, not
    # "not attempted", and the run stops.
    the_case = messaging_case()
    stop = Stop()
    result, gw = settle(
        scripted(fetch_task=[the_case.task, fatal], close_channel=[None]), the_case, stop=stop
    )
    assert (result.outcome, result.status_after, result.attempts) == (Outcome.CLOSED, None, 1)
    assert gw.methods() == ["fetch_task", "close_channel", "fetch_task"]
    assert stop.error is fatal


def test_a_first_refusal_then_a_fatal_read_keeps_the_refusal_not_untried():
    # The first try was sent and refused (412); the read that checks the refusal meets a 401.
    # The refusal stands (nothing of ours was sent before it), and the run stops.
    stop = Stop()
    fatal = AuthError(401, 20003, "Authenticate")
    result, gw = settle(
        scripted(update_task=[ApiError(412, 20412, "Precondition Failed")], fetch_task=[fatal]),
        stop=stop,
    )
    assert (result.outcome, result.why, result.attempts) == (Outcome.SKIPPED, "changed-412", 1)
    assert gw.methods() == ["update_task", "fetch_task"]
    assert stop.error is fatal


def test_a_sent_try_then_a_fatal_read_back_is_unknown():
    # A 5xx may have been applied; every try fails, and the read back meets the deadline.
    stop = Stop()
    fatal = DeadlineExceeded("the run's --deadline passed")
    result, _ = settle(
        scripted(
            update_task=[ApiError(503, 20503, "Service Unavailable")],
            fetch_task=[fatal],
        ),
        stop=stop,
    )
    assert result.outcome is Outcome.UNKNOWN
    assert stop.error is fatal
