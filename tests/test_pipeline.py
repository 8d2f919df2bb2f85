"""The pipeline's shapes, gate and failure handling over a scripted fake gateway (no network)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from fakes import NOW, WS, Call, FakeGateway, Tasks, ended_call, sid, voice_task
from stuck_tasks.audit import Recorder
from stuck_tasks.errors import AuthError, BadResponse, PermissionDenied
from stuck_tasks.guards import Limits
from stuck_tasks.models import Outcome, Rules
from stuck_tasks.pipeline import Job, Pipeline, Ran
from stuck_tasks.ratecontrol import Metrics, Reads, RetryPolicy, Stop, StopReason
from stuck_tasks.settings import Scope

RULES = Rules(grace=timedelta(minutes=2))


def workspace(n: int = 30, page_size: int = 7) -> Tasks:
    tasks = Tasks(page_size=page_size)
    for i in range(1, n + 1):
        tasks.add(voice_task(i, "assigned" if i % 2 else "pending"), ended_call(sid("CA", i)))
    return tasks


def run(
    handler,
    shape: str = "plan_and_apply",
    *,
    limits: Limits | None = None,
    concurrency: int = 4,
    stop: Stop | None = None,
    deadline: float = 10.0,
    drain: float = 2.0,
    scope: Scope | None = None,
    cases=None,
) -> tuple[Ran, FakeGateway, Recorder, Stop]:
    gw = FakeGateway(handler)
    stop = stop or Stop()
    job = Job(scope or Scope(WS), RULES, limits or Limits(), "reason (run T)", concurrency, drain)
    recorder = Recorder(None, dry_run=shape == "plan")
    reads = Reads(
        RetryPolicy(attempts=3, base=0.001, cap=0.002, deadline=time.monotonic() + deadline),
        Metrics(),
        stop,
    )
    pipeline = Pipeline(gw.opener(), job, sink=recorder, reads=reads, now=lambda: NOW)
    if shape == "apply":
        ran = asyncio.run(pipeline.apply(cases, recheck_evidence=False))
    else:
        ran = asyncio.run(getattr(pipeline, shape)())
    return ran, gw, recorder, stop


def test_plan_examines_every_task_on_every_page_and_writes_nothing():
    tasks = workspace(30)
    ran, gw, recorder, _ = run(tasks.handler(), "plan")
    assert ran.plan.complete
    assert ran.plan.listed == 30
    assert len(ran.plan.to_close) == 30
    assert "update_task" not in gw.methods()
    assert gw.methods().count("next_task_page") == 4
    assert recorder.tally.examined == 0  # to-close cases are recorded once settled (or not)


def test_plan_and_apply_writes_nothing_before_the_last_page():
    tasks = workspace(30)
    _ran, gw, recorder, _ = run(tasks.handler())
    methods = gw.methods()
    last_page = max(i for i, m in enumerate(methods) if m.endswith("_task_page"))
    first_write = methods.index("update_task")
    assert first_write > last_page
    assert len(tasks.writes) == 30
    assert recorder.tally.outcomes[Outcome.CLOSED.value] == 30


def test_a_guard_trip_halts_every_later_write_and_quotes_the_final_plan():
    tasks = workspace(30)
    ran, _gw, _recorder, _ = run(tasks.handler(), limits=Limits(max_changes=10))
    assert tasks.writes == []  # 30 listed > 10: writes waited for the whole plan
    assert ran.halted
    assert "closes 30 tasks" in ran.halted[0]
    assert "--max-changes 30" in ran.halted[0]
    assert {r.why for r in ran.results.values()} == {"guard-refused"}


def test_a_guard_that_trips_after_writes_began_stops_the_later_ones():
    # Call lookups start failing after the warm-up: the lookup-failure guard trips mid-run.
    tasks = workspace(300, page_size=100)
    served = {"calls": 0}

    def fetch_call(call: Call):
        served["calls"] += 1
        if served["calls"] > 210 and served["calls"] % 2 == 0:  # one in two fails, late
            return BadResponse("garbled")
        return tasks.calls[call.args["sid"]]

    ran, _gw, _, _ = run(tasks.handler(fetch_call=fetch_call), limits=Limits(max_changes=1000))
    assert ran.halted
    refused = [r for r in ran.results.values() if r.why == "guard-refused"]
    closed = [r for r in ran.results.values() if r.outcome is Outcome.CLOSED]
    assert closed
    assert refused
    assert len(tasks.writes) == len(closed) < len(ran.plan.to_close)


def test_401_mid_listing_stops_at_once_with_no_write():
    tasks = workspace(30)

    def next_page(call: Call):
        return AuthError(401, 20003, "Authenticate")

    started = time.monotonic()
    ran, _gw, _, stop = run(tasks.handler(next_task_page=next_page))
    assert time.monotonic() - started < 2
    assert isinstance(stop.error, AuthError)
    assert not ran.plan.complete
    assert tasks.writes == []
    assert {r.why for r in ran.results.values()} <= {"stopped-by-error"}


def test_a_missing_permission_stops_all_writes_at_the_first_refusal():
    tasks = workspace(30)
    refusals = []

    def update(call: Call):
        refusals.append(call)
        return PermissionDenied(403, 70051, "not allowed", kind="update_task")

    ran, _, _, stop = run(tasks.handler(update_task=update), concurrency=1)
    assert isinstance(stop.error, PermissionDenied)
    assert len(refusals) == 1
    # The refused write was not applied (403): nothing was sent, nothing else was tried.
    assert sum(r.outcome is Outcome.NOT_ATTEMPTED for r in ran.results.values()) == 30


def test_a_stage_that_raises_ends_the_run_at_once_and_lists_writes_in_flight():
    tasks = workspace(260, page_size=100)
    gate = asyncio.Event()

    async def hanging_update(call: Call):
        await gate.wait()  # never answers: these writes are in flight when the crash comes

    def fetch_call(call: Call):
        if call.args["sid"] == sid("CA", 250):  # after the warm-up: writes have begun
            raise RuntimeError("an attribute of an unexpected type")
        return tasks.calls[call.args["sid"]]

    started = time.monotonic()
    ran, _, _, _ = run(tasks.handler(update_task=hanging_update, fetch_call=fetch_call))
    assert time.monotonic() - started < 2
    assert ran.crash == "RuntimeError: an attribute of an unexpected type"
    assert len(ran.in_flight) == 4  # every writer was mid-write: named for the summary


def test_a_stop_drains_in_flight_writes_then_cuts_what_still_hangs():
    tasks = workspace(10)
    stop = Stop()

    async def hanging_update(call: Call):
        stop.interrupt()  # Ctrl-C arrives while this write is in flight
        await asyncio.sleep(3600)

    started = time.monotonic()
    ran, _, _, _ = run(
        tasks.handler(update_task=hanging_update), stop=stop, drain=0.3, concurrency=2
    )
    assert time.monotonic() - started < 2
    assert ran.aborted
    assert ran.in_flight  # named, so the summary can say "check these tasks"
    assert stop.reason is StopReason.INTERRUPTED


def test_the_deadline_bounds_the_listing_too():
    tasks = workspace(30)

    async def endless_page(call: Call):
        await asyncio.sleep(3600)

    started = time.monotonic()
    _ran, _, _, stop = run(tasks.handler(next_task_page=endless_page), deadline=0.3, drain=0.3)
    assert time.monotonic() - started < 2
    assert stop.error is not None
    assert "deadline" in str(stop.error)
    assert tasks.writes == []


def test_a_repeated_page_url_ends_the_listing_with_a_clear_error():
    tasks = workspace(30)
    _ran, _, _, stop = run(tasks.handler(next_task_page=lambda call: tasks.page(0)))
    assert isinstance(stop.error, BadResponse)
    assert "repeats" in str(stop.error)
    assert tasks.writes == []


def test_each_call_is_looked_up_once_however_many_tasks_name_it():
    tasks = Tasks()
    shared = sid("CA", 99)
    for i in range(1, 6):
        tasks.add(voice_task(i, call=shared))
    tasks.calls[shared] = ended_call(shared)
    _, gw, _, _ = run(tasks.handler(), "plan")
    assert gw.methods().count("fetch_call") == 1


def test_task_sids_are_examined_once_each():
    tasks = workspace(3)
    scope = Scope(WS, task_sids=(sid("WT", 1), sid("WT", 1), sid("WT", 2)))
    ran, gw, _, _ = run(tasks.handler(), "plan", scope=scope)
    assert [c.sid for c in ran.plan.cases].count(sid("WT", 1)) == 1
    assert gw.methods().count("fetch_task") == 2


def test_apply_reads_each_task_again_and_skips_what_changed():
    tasks = workspace(4)
    planned, _, _, _ = run(tasks.handler(), "plan")
    tasks.update(sid("WT", 2), status="canceled", reason="by an agent", if_match=None)
    ran, _, _, _ = run(tasks.handler(), "apply", cases=planned.plan.to_close)
    assert ran.results[sid("WT", 2)].why == "now-canceled"
    assert sum(r.outcome is Outcome.CLOSED for r in ran.results.values()) == 3


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_full_disk_stops_further_writes_and_the_summary_keeps_what_the_log_missed(
    concurrency, tmp_path
):
    import os

    from stuck_tasks.audit import AuditLog
    from stuck_tasks.errors import AuditFailed

    tasks = workspace(12)
    log = AuditLog(tmp_path / "audit.jsonl")
    log.write({"type": "header"})
    full = os.open("/dev/full", os.O_WRONLY)  # every write from now on: ENOSPC, a full disk
    os.dup2(full, log._file.fileno())  # type: ignore[union-attr]
    os.close(full)
    gw = FakeGateway(tasks.handler())
    stop = Stop()
    recorder = Recorder(log, dry_run=False)
    reads = Reads(RetryPolicy(deadline=time.monotonic() + 10), Metrics(), stop)
    job = Job(Scope(WS), RULES, Limits(), "reason", concurrency, 2.0)
    pipeline = Pipeline(gw.opener(), job, sink=recorder, reads=reads, now=lambda: NOW)
    ran = asyncio.run(pipeline.plan_and_apply())
    assert isinstance(stop.error, AuditFailed)
    closed = {s for s, r in ran.results.items() if r.outcome is Outcome.CLOSED}
    assert closed == {s for s, _ in tasks.writes}
    assert 1 <= len(closed) <= concurrency  # only the writes already in flight
    assert set(recorder.not_logged) == closed  # none of them reached the log: all kept
