"""The run's stages, wired one way: list -> examine -> gate -> settle -> record.

Three run shapes are three calls:

- ``plan()``: list and examine every task; no write.
- ``plan_and_apply()`` (``--yes``): the same, with writes pipelined behind the gate: no write
  starts before the listing has paged to its end (how Twilio's page tokens behave while tasks
  change is undocumented) and the guards have passed on a warm-up sample; the guards keep
  watching, and a trip halts every later write while planning goes on to its final numbers.
- ``apply(cases)``: write a confirmed or saved plan, reading each task again first.

Every stage reports to one sink (``audit.Recorder``: the audit log, the tally, progress). All
work runs in one ``asyncio.TaskGroup``: an unexpected exception anywhere cancels everything at
once and the writes then in flight are listed. Expected fatal errors (credentials refused, the
deadline, the audit log unwritable) stop the run gracefully through ``Stop``: no new work
starts, in-flight writes settle. A supervisor bounds it all: at ``--deadline`` it stops the run,
and work still going ``drain`` seconds after a stop (or at a second Ctrl-C) is cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime

from .audit import Recorder
from .errors import AuditFailed, AuthError, DeadlineExceeded, Stopped, StuckTasksError
from .examine import Examiner
from .guards import Counts, Limits, refusals
from .listing import Listed, Listing
from .models import ApplyResult, Case, Gateway, Outcome, Rules, TaskRecord
from .ratecontrol import Reads, Stop, StopReason
from .settings import Scope
from .settle import Settler, skip

WARM_UP = 200  # decisions the guards see before a pipelined run's first write
OpenGateway = Callable[[], AbstractAsyncContextManager[Gateway]]


@dataclass(frozen=True)
class Job:
    """What one run works on, and how."""

    scope: Scope
    rules: Rules
    limits: Limits
    write_reason: str
    concurrency: int = 25
    drain: float = 45.0  # seconds in-flight work may take to settle after a stop


@dataclass(frozen=True)
class Plan:
    """Every examined task, in the order decisions were made."""

    cases: tuple[Case, ...] = ()
    listed: int = 0
    complete: bool = False  # the listing reached its end
    counts: Counts = field(default_factory=Counts)

    @property
    def to_close(self) -> tuple[Case, ...]:
        return tuple(c for c in self.cases if c.decision.acts)

    def refusals(self, limits: Limits) -> list[str]:
        return refusals(self.counts, limits, complete=self.complete)


@dataclass(frozen=True)
class Ran:
    """What a call into the pipeline did."""

    plan: Plan
    results: Mapping[str, ApplyResult] = field(default_factory=dict)
    in_flight: tuple[str, ...] = ()  # writes cut off by an abort: their outcome is unknown
    halted: tuple[str, ...] = ()  # the guard refusals that stopped writes
    crash: str | None = None  # an unexpected error that ended the run
    aborted: bool = False


class _Aborted(Exception):
    """Cut the run short: a second signal, or work still going long after a stop."""


class _Gate:
    """Decides when writes may start and when they must stop (pipelined runs)."""

    def __init__(self, limits: Limits, *, open_now: bool) -> None:
        self._limits = limits
        self._decided = asyncio.Event()
        self.open = open_now
        self.closed_why: str | None = None
        self.refusals: tuple[str, ...] = ()
        if open_now:
            self._decided.set()

    def update(
        self, counts: Counts, *, listed: int, listing_done: bool, planning_done: bool
    ) -> None:
        found = refusals(counts, self._limits, complete=planning_done)
        if found:
            self.refusals = tuple(found)
            self._close("guard-refused")
            return
        if self.open or self.closed_why is not None:
            return
        if not listing_done:
            if planning_done:
                self._close("listing-incomplete")
            return
        warm = counts.examined >= min(listed, WARM_UP)
        small = listed <= self._limits.max_changes
        if planning_done or (warm and small):
            self.open = True
            self._decided.set()

    def _close(self, why: str) -> None:
        self.open = False
        if self.closed_why is None:
            self.closed_why = why
        self._decided.set()

    async def wait(self) -> bool:
        """Until the gate is decided: True when writes may go."""
        await self._decided.wait()
        return self.open and self.closed_why is None


@dataclass
class _Work:
    """The state of one call into the pipeline (private to this module)."""

    cases: list[Case] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    listed: int = 0
    listing_done: bool = False
    results: dict[str, ApplyResult] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    crash: str | None = None
    aborted: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def ran(self, gate: _Gate | None) -> Ran:
        plan = Plan(tuple(self.cases), self.listed, self.listing_done, self.counts)
        return Ran(
            plan=plan,
            results=dict(self.results),
            in_flight=tuple(sorted(self.in_flight)),
            halted=gate.refusals if gate is not None else (),
            crash=self.crash,
            aborted=self.aborted,
        )


class Pipeline:
    """One workspace's run: planning, pipelined writes, or writes of a given plan."""

    def __init__(
        self,
        open_gateway: OpenGateway,
        job: Job,
        *,
        sink: Recorder,
        reads: Reads,
        now: Callable[[], datetime],
    ) -> None:
        self._open = open_gateway
        self._job = job
        self._sink = sink
        self._reads = reads
        self._now = now

    @property
    def _stop(self) -> Stop:
        return self._reads.stop

    # ------------------------------------------------------------ the three shapes

    async def plan(self) -> Ran:
        """List and examine every task of the scope; change nothing."""
        work = _Work()

        async def body(gw: Gateway, tg: asyncio.TaskGroup) -> None:
            await self._planning(gw, work, writes=None, gate=None)

        await self._run(work, body)
        return work.ran(None)

    async def plan_and_apply(self) -> Ran:
        """Plan, and close each stuck task once the gate allows (``--yes``)."""
        work = _Work()
        gate = _Gate(self._job.limits, open_now=False)

        async def body(gw: Gateway, tg: asyncio.TaskGroup) -> None:
            writes: asyncio.Queue[Case | None] = asyncio.Queue()
            settler = self._settler(gw, fresh_first=False, evidence=False)
            writers = [
                tg.create_task(self._writer(settler, writes, work, gate))
                for _ in range(self._job.concurrency)
            ]
            await self._planning(gw, work, writes=writes, gate=gate)
            gate.update(
                work.counts, listed=work.listed, listing_done=work.listing_done, planning_done=True
            )
            for _ in writers:
                writes.put_nowait(None)
            await asyncio.gather(*writers)

        await self._run(work, body)
        return work.ran(gate)

    async def apply(self, cases: Iterable[Case], *, recheck_evidence: bool) -> Ran:
        """Write a confirmed plan (``recheck_evidence``: a saved one, whose evidence is looked
        up and decided again). Each task is read again first: minutes may have passed."""
        work = _Work()
        gate = _Gate(self._job.limits, open_now=True)
        planned = list(cases)
        work.cases.extend(planned)
        work.counts = Counts.of(planned)
        work.listed, work.listing_done = len(planned), True

        async def body(gw: Gateway, tg: asyncio.TaskGroup) -> None:
            self._sink.phase("re-checking and closing" if recheck_evidence else "closing")
            writes: asyncio.Queue[Case | None] = asyncio.Queue()
            for case in planned:
                writes.put_nowait(case)
            settler = self._settler(gw, fresh_first=True, evidence=recheck_evidence)
            writers = [
                tg.create_task(self._writer(settler, writes, work, gate))
                for _ in range(min(self._job.concurrency, max(1, len(planned))))
            ]
            for _ in writers:
                writes.put_nowait(None)
            await asyncio.gather(*writers)

        await self._run(work, body)
        return work.ran(gate)

    # ------------------------------------------------------------ structure

    async def _run(self, work: _Work, body: Callable[[Gateway, asyncio.TaskGroup], object]) -> None:
        try:
            async with self._open() as gw, asyncio.TaskGroup() as tg:
                tg.create_task(self._supervise(work))
                try:
                    await body(gw, tg)  # type: ignore[misc]
                finally:
                    work.done.set()
        except* _Aborted:
            work.aborted = True
        except* Exception as group:
            first: BaseException = group
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            work.crash = f"{type(first).__name__}: {first}"

    async def _supervise(self, work: _Work) -> None:
        """Stop the run at the deadline; cut work still going ``drain`` s after a stop."""
        stop = self._stop
        waits = {asyncio.ensure_future(work.done.wait()), asyncio.ensure_future(stop.wait())}
        try:
            await asyncio.wait(
                waits, timeout=self._reads.policy.remaining(), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiting in waits:
                waiting.cancel()
        if work.done.is_set():
            return
        if not stop.requested:
            stop.fail(DeadlineExceeded("the run's --deadline passed before the work settled"))
        cut_at = time.monotonic() + self._job.drain
        while not work.done.is_set():
            if stop.aborted or time.monotonic() >= cut_at:
                raise _Aborted
            try:
                await asyncio.wait_for(work.done.wait(), timeout=0.05)
            except TimeoutError:
                continue

    # ------------------------------------------------------------ list, examine

    async def _planning(
        self,
        gw: Gateway,
        work: _Work,
        *,
        writes: asyncio.Queue[Case | None] | None,
        gate: _Gate | None,
    ) -> None:
        n = self._job.concurrency
        # Unbounded: the listing (one request per 1,000 tasks) runs ahead of the examiners, so
        # it completes early and writes can start while the rest is examined; a listed task
        # is a few hundred bytes.
        tasks: asyncio.Queue[Listed | None] = asyncio.Queue()
        examiner = self._examiner(gw)
        self._sink.phase("listing")
        async with asyncio.TaskGroup() as tg:
            workers = [
                tg.create_task(self._examine_worker(examiner, tasks, work, writes, gate))
                for _ in range(n)
            ]
            listing = Listing(
                gw, self._job.scope, statuses=self._job.rules.statuses, reads=self._reads
            )
            try:
                async for item in listing:
                    self._sink.listed()
                    await tasks.put(item)
            except Stopped:
                pass  # the run is already stopping: the listing is incomplete
            except (StuckTasksError, AuditFailed) as error:
                self._stop.fail(error)
            work.listed = listing.listed
            work.listing_done = listing.complete and not self._stop.requested
            self._sink.phase("examining")
            if gate is not None:
                gate.update(
                    work.counts,
                    listed=work.listed,
                    listing_done=work.listing_done,
                    planning_done=False,
                )
            for _ in workers:
                tasks.put_nowait(None)

    async def _examine_worker(
        self,
        examiner: Examiner,
        tasks: asyncio.Queue[Listed | None],
        work: _Work,
        writes: asyncio.Queue[Case | None] | None,
        gate: _Gate | None,
    ) -> None:
        while (item := await tasks.get()) is not None:
            if self._stop.requested:
                continue  # drain: not examined
            try:
                case = await examiner.examine(item)
            except (AuthError, DeadlineExceeded) as error:
                self._stop.fail(error)
                continue
            except Stopped:
                continue  # the run is stopping: not examined
            work.cases.append(case)
            work.counts = work.counts.plus(case)
            self._record(self._sink.decided, case)
            if writes is not None and case.decision.acts:
                writes.put_nowait(case)
            if gate is not None:
                gate.update(
                    work.counts,
                    listed=work.listed,
                    listing_done=work.listing_done,
                    planning_done=False,
                )

    # ------------------------------------------------------------ gate, settle, record

    async def _writer(
        self, settler: Settler, writes: asyncio.Queue[Case | None], work: _Work, gate: _Gate
    ) -> None:
        while (case := await writes.get()) is not None:
            allowed = await gate.wait()
            if self._stop.requested:
                result = self._not_started()  # interrupted, or stopped by an error
            elif not allowed:
                why = gate.closed_why or "not-applied"
                detail = "; ".join(gate.refusals) or "the listing did not complete"
                result = ApplyResult(Outcome.NOT_ATTEMPTED, why, detail)
            else:
                work.in_flight.add(case.sid)
                self._sink.phase("closing")
                result = await settler.settle(case)
                work.in_flight.discard(case.sid)
            work.results[case.sid] = result
            self._record(self._sink.settled, case, result)

    def _record(self, report: Callable[..., None], *args: object) -> None:
        """Report to the sink; an audit log that cannot be written stops every write (the sink
        keeps the record for the summary)."""
        try:
            report(*args)
        except AuditFailed as error:
            self._stop.fail(error)

    def _not_started(self) -> ApplyResult:
        if self._stop.reason is StopReason.INTERRUPTED:
            return ApplyResult(
                Outcome.NOT_ATTEMPTED, "interrupted", "the run was interrupted first"
            )
        return ApplyResult(
            Outcome.NOT_ATTEMPTED, "stopped-by-error", f"the run stopped: {self._stop.error}"
        )

    # ------------------------------------------------------------ parts

    def _examiner(self, gw: Gateway) -> Examiner:
        return Examiner(
            gw,
            workspace_sid=self._job.scope.workspace_sid,
            rules=self._job.rules,
            reads=self._reads,
            now=self._now,
        )

    def _settler(self, gw: Gateway, *, fresh_first: bool, evidence: bool) -> Settler:
        examiner = self._examiner(gw) if evidence else None

        async def recheck(case: Case, fresh: TaskRecord) -> ApplyResult | Case:
            assert examiner is not None
            again = await examiner.decide(fresh)
            if again.decision.action is not case.decision.action:
                return skip("no-longer-stuck", again.decision.detail, 0)
            return replace(again, task=fresh)

        return Settler(
            gw,
            self._job.scope.workspace_sid,
            self._job.write_reason,
            self._reads,
            fresh_first=fresh_first,
            recheck=recheck if evidence else None,
        )
