"""One run, start to end: connect, find the workspace, plan, guard, (ask,) apply, report.

The click layer drives it: ``execute()`` runs up to the confirmation question (returning a
``Question``) or to the end (returning a ``RunResult``); ``answer()`` carries on after the
question. This module never calls back up and never prints: it returns data, and reports
progress and notices to the ``report.Display`` it was given.

Each phase runs in its own event loop (the question in between is synchronous), with SIGINT,
SIGTERM and SIGHUP turned into a clean stop: the first stops new work and lets what is in
flight settle, the second cuts it short. Where the loop has no signal handlers (Windows) the
same handler is installed with ``signal.signal``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from . import __version__, planfile
from .audit import AuditLog, Recorder
from .clock import TwilioClock
from .errors import (
    AuthError,
    ConfigError,
    NotFound,
    PermissionDenied,
    Stopped,
    StuckTasksError,
    describe,
)
from .gateway import gateway_factory
from .guards import Counts
from .models import ApplyResult, Case, Gateway, Named, Outcome, Workspace
from .pipeline import Job, OpenGateway, Pipeline, Plan, Ran
from .ratecontrol import (
    SLOW_START,
    AdaptiveLimiter,
    Metrics,
    Reads,
    RetryPolicy,
    Stop,
    StopReason,
)
from .report import (
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_STUCK_FOUND,
    EXIT_USAGE,
    Display,
    Target,
    case_data,
    summary_document,
    utcnow,
)
from .settings import Scope, Settings
from .transport import PERMISSIONS

T = TypeVar("T")
WORKSPACE_SID_PREFIX = "WS"


class Answer(enum.Enum):
    YES = "yes"
    NO = "no"
    INTERRUPTED = "interrupted"  # Ctrl-C or Ctrl-D at the question


@dataclass(frozen=True)
class Question:
    """The run waits for the person: show ``plan``, then ask ``text``."""

    text: str
    plan: tuple[Case, ...]
    target: Target
    refusals: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunResult:
    """What the click layer renders."""

    document: dict[str, Any]
    exit_code: int
    messages: tuple[str, ...] = ()  # one line each, for stderr
    plan: tuple[Case, ...] | None = None  # a dry run's plan (stdout)
    explain: tuple[Case, ...] | None = None  # --task: each task explained (stdout)
    results: dict[str, ApplyResult] = field(default_factory=dict)
    target: Target | None = None


def catch_signals(
    loop: asyncio.AbstractEventLoop, handler: Callable[[], None], signals: tuple[int, ...]
) -> Callable[[], None]:
    """Route ``signals`` to ``handler`` in ``loop``; returns a function that undoes it.

    ``loop.add_signal_handler`` is Unix-only: elsewhere (Windows' Proactor loop) the handler is
    installed with ``signal.signal`` and hops into the loop with ``call_soon_threadsafe``.
    """
    installed: list[tuple[int, Any, bool]] = []  # (signal, handler before, through the loop)
    for sig in signals:
        before = signal.getsignal(sig)
        try:
            loop.add_signal_handler(sig, handler)
        except (NotImplementedError, RuntimeError, ValueError):
            signal.signal(sig, lambda _s, _f: loop.call_soon_threadsafe(handler))
            installed.append((sig, before, False))
        else:
            installed.append((sig, before, True))

    def restore() -> None:
        for sig, before, through_loop in reversed(installed):
            if through_loop:
                loop.remove_signal_handler(sig)  # this resets the handler to the default...
            signal.signal(sig, before)  # ...so put back the one that was there

    return restore


def note_signals(handler: Callable[[], None], signals: tuple[int, ...]) -> Callable[[], None]:
    """Route ``signals`` to ``handler`` with ``signal.signal`` (no loop is running); returns a
    function that undoes it. Outside the main thread Python sets no handlers: nothing is done."""
    installed: list[tuple[int, Any]] = []
    for sig in signals:
        try:
            before = signal.signal(sig, lambda _s, _f: handler())
        except ValueError:  # not the main thread
            continue
        installed.append((sig, signal.SIG_DFL if before is None else before))

    def restore() -> None:
        for sig, before in reversed(installed):
            signal.signal(sig, before)

    return restore


STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Run:
    """One run of the tool against one workspace."""

    def __init__(
        self,
        settings: Settings,
        display: Display,
        *,
        open_gateway: Callable[..., OpenGateway] | None = None,
        signals: tuple[int, ...] = STOP_SIGNALS,
    ) -> None:
        self.settings = settings
        self.display = display
        self.metrics = Metrics()
        self.clock = TwilioClock()
        self.stop = Stop()
        self.limiter = AdaptiveLimiter(settings.concurrency, metrics=self.metrics, start=SLOW_START)
        self._signals = signals
        self._presses = 0  # stop signals so far: the first stops new work, the next aborts
        self._started = time.monotonic()
        self._active = 0.0  # seconds spent in phases (time at the question excluded)
        self._phase_started: float | None = None
        self.reads = Reads(
            RetryPolicy(deadline=self._started + settings.deadline), self.metrics, self.stop
        )
        make = open_gateway or gateway_factory
        self._open = make(
            settings.connection,
            limiter=self.limiter,
            metrics=self.metrics,
            clock=self.clock,
            stop=self.stop,
        )
        self.recorder = Recorder(None, dry_run=not settings.writes)
        self.target: Target | None = None
        self.scope: Scope | None = None
        self.saved: planfile.SavedPlan | None = None
        self._ran: list[Ran] = []
        self._plan: Plan | None = None
        self._refusals: tuple[str, ...] = ()
        self._ending: str | None = None  # "declined", "interrupted": how the question ended

    # ------------------------------------------------------------ phases

    def _phase(self, body: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run one phase in its own event loop, with signal handling and progress."""

        # The phase's value leaves through ``done``, not as the task's result: asyncio.Runner
        # ends by calling signal.getsignal, which formats its SIGINT handler (a partial holding
        # the main task) and with it the task's result: the whole plan, thousands of cases.
        done: list[T] = []

        async def main() -> None:
            restore = catch_signals(asyncio.get_running_loop(), self._on_signal, self._signals)
            ticker = asyncio.create_task(self._tick())
            try:
                done.append(await body())
            finally:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
                restore()
                self.display.clear()

        self._phase_started = time.monotonic()
        try:
            asyncio.run(main())
            return done[0]
        finally:
            self._active += time.monotonic() - self._phase_started
            self._phase_started = None

    def _on_signal(self) -> None:
        self._presses += 1
        if self._presses == 1:
            self.stop.interrupt()
            self.display.notice(
                "\nStopping: no new work starts, in-flight requests settle. "
                "Press Ctrl-C again to stop at once."
            )
        else:
            self.stop.abort()

    @contextlib.contextmanager
    def _signals_noted(self) -> Iterator[None]:
        """Between phases too, a signal is noted, never raised: a KeyboardInterrupt as a phase
        ends (its event loop's handlers already put back) or while the summary is made would
        lose that phase's results, writes already made included, and the command line would say
        "nothing was changed". A noted stop lets no new work start. The question is asked
        outside, with Python's own handling of Ctrl-C."""
        restore = note_signals(self._on_signal, self._signals)
        try:
            yield
        finally:
            restore()

    def active_seconds(self) -> float:
        running = time.monotonic() - self._phase_started if self._phase_started else 0.0
        return self._active + running

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            m = self.metrics
            self.display.progress(
                self.recorder.snapshot(
                    requests=m.total,
                    throttled=m.throttled,
                    waited=m.backoff_seconds + m.paced_seconds,
                    active=self.active_seconds(),
                ),
                now=time.monotonic(),
            )

    def _pipeline(self) -> Pipeline:
        s = self.settings
        assert self.scope is not None
        job = Job(
            scope=self.scope,
            rules=s.rules,
            limits=s.limits,
            write_reason=s.write_reason,
            concurrency=s.concurrency,
            drain=min(120.0, max(10.0, 3 * s.connection.timeout)),
        )
        return Pipeline(self._open, job, sink=self.recorder, reads=self.reads, now=self.clock.now)

    # ------------------------------------------------------------ connect

    async def _connect(self) -> None:
        creds = self.settings.connection.credentials
        async with self._open() as gw:
            # The account's name is read alongside the workspace (a round trip saved); it is
            # awaited, or cancelled and awaited, before the connection closes.
            naming = asyncio.ensure_future(self._account_name(gw))
            try:
                workspace = await self._resolve_workspace(gw)
                if workspace.account_sid != creds.account_sid:
                    raise ConfigError(
                        f"the credentials belong to account {workspace.account_sid} (workspace "
                        f"{workspace.sid} is in it), but TWILIO_ACCOUNT_SID is "
                        f"{creds.account_sid}: use the account SID of the key's account, or "
                        "that account's key; nothing was changed"
                    )
                account_name = await naming
            finally:
                naming.cancel()
                await asyncio.gather(naming, return_exceptions=True)
            filters = {}
            if self.settings.task_queue:
                queue = await self._resolve(gw, workspace, self.settings.task_queue, "task queue")
                filters["TaskQueueSid"] = queue.sid
            if self.settings.workflow:
                flow = await self._resolve(gw, workspace, self.settings.workflow, "workflow")
                filters["WorkflowSid"] = flow.sid
        self.target = Target(
            workspace_sid=workspace.sid,
            workspace_name=workspace.friendly_name,
            account_sid=workspace.account_sid,
            account_name=account_name,
            credentials=creds.describe(),
            base_url=self.settings.connection.base_url,
        )
        self.scope = Scope(workspace.sid, filters, self.settings.task_sids, self.settings.limit)

    async def _account_name(self, gw: Gateway) -> str | None:
        creds = self.settings.connection.credentials
        if creds.is_api_key:
            # Standard and Restricted API keys may not read /Accounts (401/20003, 403/70051);
            # only the auth token is sure to. The name is for people; nothing depends on it.
            # (With the auth token a 401 is credentials refused: it stops the run, as anywhere.)
            return None
        try:
            return await self.reads.call(lambda: gw.account_name(creds.account_sid))
        except NotFound:
            return None

    async def _resolve_workspace(self, gw: Gateway) -> Workspace:
        wanted = self.settings.workspace
        if not wanted and self.saved is not None:
            wanted = self.saved.workspace_sid
        if wanted and wanted.startswith(WORKSPACE_SID_PREFIX) and len(wanted) == 34:
            try:
                return await self.reads.call(lambda: gw.workspace(wanted))
            except NotFound:
                raise ConfigError(
                    f"workspace {wanted} was not found with these credentials "
                    f"({self.settings.connection.credentials.describe()})"
                ) from None
        every = await self.reads.call(lambda: gw.workspaces())
        if wanted:
            return one_named(every, wanted, what="workspace", option="--workspace")
        if len(every) == 1:
            self.display.notice(
                f"Using workspace {every[0].friendly_name!r} ({every[0].sid}), "
                "the account's only workspace."
            )
            return every[0]
        raise ConfigError(
            f"choose a workspace with --workspace or TWILIO_WORKSPACE_SID; {_listing(every, 'workspaces')}"
        )

    async def _resolve(self, gw: Gateway, workspace: Workspace, wanted: str, what: str) -> Named:
        """A task queue or workflow by SID or exact name; anything else is refused."""
        if what == "task queue":
            found = await self.reads.call(lambda: gw.task_queues(workspace.sid))
            option = "--task-queue"
        else:
            found = await self.reads.call(lambda: gw.workflows(workspace.sid))
            option = "--workflow"
        return one_named(
            found,
            wanted,
            what=what,
            option=option,
            where=f" in workspace {workspace.friendly_name!r}",
        )

    # ------------------------------------------------------------ audit

    def _open_audit(self) -> None:
        s = self.settings
        path = s.audit_log
        if path is None and s.writes:
            path = Path(f"stuck-tasks-audit-{s.run_id}.jsonl")
        if path is not None:
            self.recorder = Recorder(AuditLog(path), dry_run=not s.writes)
        self.recorder.write(self._header())

    def _header(self) -> dict[str, Any]:
        s = self.settings
        t = self.target
        c = s.connection
        return {
            "type": "header",
            "run_id": s.run_id,
            "tool_version": __version__,
            "started_at": utcnow().isoformat().replace("+00:00", "Z"),
            "account_sid": t.account_sid if t else c.credentials.account_sid,
            "account_name": t.account_name if t else None,
            "workspace_sid": t.workspace_sid if t else None,
            "workspace_name": t.workspace_name if t else None,
            "credentials": c.credentials.describe(),
            "api_key_sid": c.credentials.key_sid,
            "base_url": c.base_url,
            "region": c.region,
            "edge": c.edge,
            "dry_run": not s.writes,
            "options": dict(s.options),
        }

    # ------------------------------------------------------------ the whole run

    def execute(self) -> Question | RunResult:
        """Up to the question, or to the end. ``ConfigError``/``AuthError`` before anything was
        examined are raised: one line is then the whole story."""
        with self._signals_noted():
            return self._execute()

    def _execute(self) -> Question | RunResult:
        s = self.settings
        if s.apply_plan is not None:
            self.saved = planfile.load(s.apply_plan)
        try:
            self._phase(self._connect)
        except (asyncio.CancelledError, Stopped):
            self.stop.interrupt()
        if self.stop.requested or self.target is None:
            if self.stop.error is not None:
                raise self.stop.error
            raise KeyboardInterrupt
        if self.saved is not None:
            planfile.check_applicable(
                self.saved,
                account_sid=self.target.account_sid,
                workspace_sid=self.target.workspace_sid,
                max_age=s.max_plan_age,
                now=utcnow,
            )
        self._open_audit()
        if self.saved is not None:
            self._plan = Plan(
                self.saved.cases,
                len(self.saved.cases),
                complete=True,
                counts=Counts.of(self.saved.cases),
            )
            self.recorder.planned(len(self.saved.cases))
            self._refusals = tuple(self._plan.refusals(s.limits))
            if self._refusals:
                return self.finish()  # --max-changes holds for a saved plan too
            if s.assume_yes or not self.saved.cases:
                return self._apply(self.saved.cases, evidence=True)
            return self._question(self.saved.cases)
        if s.assume_yes and s.writes:
            ran = self._phase(self._pipeline().plan_and_apply)
            self._ran.append(ran)
            self._plan = ran.plan
            self._refusals = ran.halted
            return self.finish()
        ran = self._phase(self._pipeline().plan)
        self._ran.append(ran)
        self._plan = ran.plan
        refusals = tuple(ran.plan.refusals(s.limits)) if ran.plan.complete else ()
        self._refusals = refusals
        if self.stop.requested or ran.crash or ran.aborted:
            return self.finish()
        if s.save_plan is not None:
            self._save(ran.plan)
            return self.finish()
        if s.dry_run or not ran.plan.to_close or refusals:
            return self.finish()
        return self._question(ran.plan.cases)

    def _question(self, cases: tuple[Case, ...]) -> Question:
        """Ask before closing the tasks of ``cases`` that are to close (all are shown)."""
        assert self.target is not None
        t = self.target
        count = sum(1 for c in cases if c.decision.acts)
        return Question(
            # Short enough for any terminal: the plan above it names both SIDs and the account.
            text=f"Close {count} tasks in workspace {t.workspace_name!r}?",
            plan=cases,
            target=t,
            refusals=self._refusals,
        )

    def answer(self, answer: Answer) -> RunResult:
        """Carry on after the question."""
        with self._signals_noted():
            return self._answer(answer)

    def _answer(self, answer: Answer) -> RunResult:
        assert self._plan is not None
        if answer is Answer.YES:
            return self._apply(self._plan.to_close, evidence=self.saved is not None)
        self._ending = "declined" if answer is Answer.NO else "interrupted"
        return self.finish()

    def _apply(self, cases: tuple[Case, ...], *, evidence: bool) -> RunResult:
        pipeline = self._pipeline()
        ran = self._phase(lambda: pipeline.apply(cases, recheck_evidence=evidence))
        self._ran.append(ran)
        return self.finish()

    def _save(self, plan: Plan) -> None:
        s = self.settings
        assert s.save_plan is not None and self.target is not None
        planfile.save(
            s.save_plan,
            planfile.SavedPlan(
                run_id=s.run_id,
                created_at=utcnow(),
                account_sid=self.target.account_sid,
                workspace_sid=self.target.workspace_sid,
                workspace_name=self.target.workspace_name,
                grace_seconds=s.grace.total_seconds(),
                cases=plan.to_close,
            ),
        )
        self.display.notice(
            f"Plan saved to {s.save_plan}; apply it with --apply-plan {s.save_plan}"
        )

    # ------------------------------------------------------------ the end

    def finish(self) -> RunResult:
        """Record what never settled, decide the status and exit code, write the footer."""
        s = self.settings
        plan = self._plan or Plan()
        results: dict[str, ApplyResult] = {}
        in_flight: list[str] = []
        crash = None
        aborted = False
        for ran in self._ran:
            results.update(ran.results)
            in_flight.extend(ran.in_flight)
            crash = crash or ran.crash
            aborted = aborted or ran.aborted
        cut = {sid: c for c in plan.to_close if (sid := c.sid) in in_flight}
        for sid, case in cut.items():
            result = ApplyResult(
                Outcome.UNKNOWN,
                "in-flight-at-abort",
                "the write was in flight when the run was cut short",
            )
            results[sid] = result
            self._safely(lambda c=case, r=result: self.recorder.settled(c, r))  # type: ignore[misc]
        status, code, messages = self._status(crash=crash, aborted=aborted)
        why = {
            "declined": "declined",
            "interrupted": "interrupted",
            "refused": "guard-refused",
        }.get(status, "dry-run" if not s.writes else "not-applied")
        if status == "error":
            why = "stopped-by-error"
        unsettled = [c for c in plan.to_close if c.sid not in results]
        self._safely(lambda: self.recorder.unsettled(unsettled, why=why))
        tally = self.recorder.tally
        if tally.unsettled and status == "done":
            status, code = "partial", EXIT_PARTIAL
        if status == "dry-run" and s.options.get("detailed_exitcode") and tally.to_close:
            code = EXIT_STUCK_FOUND
        tasks = None
        if s.task_sids:
            tasks = [case_data(c, results.get(c.sid)) for c in plan.cases]
        elif not s.writes:
            tasks = [case_data(c) for c in plan.to_close]
        log = self.recorder.log
        document = summary_document(
            self._header(),
            tally,
            status=status,
            exit_code=code,
            metrics=self.metrics.as_dict(),
            elapsed=self.active_seconds(),
            audit_log=str(log.path) if log is not None else None,
            in_flight=in_flight,
            not_logged=self.recorder.not_logged,
            refusals=self._refusals,
            error=messages[0] if messages and status == "error" else None,
            tasks=tasks,
        )
        self._safely(lambda: self.recorder.write({"type": "footer", **document}))
        if log is not None:
            log.close()
        if self.recorder.audit_failed:
            messages = (
                *messages,
                "the audit log is incomplete: the summary below lists what it misses",
            )
        return RunResult(
            document=document,
            exit_code=code,
            messages=messages,
            plan=plan.cases if not s.writes and not s.task_sids else None,
            explain=plan.cases if s.task_sids else None,
            results=results,
            target=self.target,
        )

    def _safely(self, write: Callable[[], None]) -> None:
        with contextlib.suppress(StuckTasksError):  # the recorder keeps what the log missed
            write()

    def _status(self, *, crash: str | None, aborted: bool) -> tuple[str, int, tuple[str, ...]]:
        stop = self.stop
        if crash is not None:
            return "error", EXIT_FATAL, (f"internal error, the run was stopped: {crash}",)
        if self._ending == "interrupted" or stop.reason is StopReason.INTERRUPTED:
            return "interrupted", EXIT_INTERRUPTED, ()
        if stop.error is not None:
            return "error", *self._fatal(stop.error)
        if aborted:
            return (
                "error",
                EXIT_FATAL,
                ("the run was cut short: work was still going long after it stopped",),
            )
        if self._refusals and self.settings.writes:
            return "refused", EXIT_USAGE, tuple(f"refused: {r}" for r in self._refusals)
        if self._ending == "declined":
            return "declined", EXIT_OK, ()
        if not self.settings.writes:
            return "dry-run", EXIT_OK, ()
        return "done", EXIT_OK, ()

    def _fatal(self, error: StuckTasksError) -> tuple[int, tuple[str, ...]]:
        if isinstance(error, PermissionDenied):
            needed = PERMISSIONS.get(error.kind)
            grant = (
                f"grant it {needed}"
                if needed
                else "no Restricted-key permission grants it: use a Standard API key"
            )
            what = error.kind.replace("_", " ") or "a request"
            return EXIT_USAGE, (
                f"the API key may not {what} (HTTP 403, error 70051): {grant} "
                "(README: minimal permissions); the run stopped at the first refusal",
            )
        if isinstance(error, AuthError):
            accepted = self.metrics.accepted
            return EXIT_USAGE, (
                f"Twilio stopped accepting the credentials after {accepted} requests "
                f"(HTTP {error.status}, error {error.code}): they were revoked or changed; the "
                "run stopped at once",
            )
        if isinstance(error, ConfigError):
            return EXIT_USAGE, (str(error),)
        return EXIT_FATAL, (describe(error),)


N = TypeVar("N", Named, Workspace)


def one_named(found: list[N], wanted: str, *, what: str, option: str, where: str = "") -> N:
    """The one item whose SID or exact friendly name is ``wanted``; none or several is refused
    with the known ones listed (a typo must never look like "nothing is stuck")."""
    exact = [n for n in found if wanted in (n.sid, n.friendly_name)]
    if len(exact) == 1:
        return exact[0]
    if exact:
        raise ConfigError(
            f"{len(exact)} {what}s are named {wanted!r}: {', '.join(n.sid for n in exact)}; "
            f"pass {option} with a SID"
        )
    raise ConfigError(f"no {what} named {wanted!r}{where}; {_listing(found, what + 's')}")


def _listing(items: list[Named] | list[Workspace], what: str) -> str:
    if not items:
        return f"there are no {what}"
    names = ", ".join(f"{w.friendly_name!r} ({w.sid})" for w in items[:20])
    more = f" and {len(items) - 20} more" if len(items) > 20 else ""
    return f"the {what}: {names}{more}"
