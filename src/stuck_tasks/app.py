"""One run, start to end: connect, find the workspace, plan, guard, confirm, apply, report.

The click layer builds ``Settings`` and a ``UI``; this module never prints by itself.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol, TypeVar

from . import __version__, planfile
from .audit import AuditLog
from .errors import AuthError, ConfigError, NotFound, StuckTasksError
from .gateway import Connection, Named, TwilioGateway
from .guards import Counts, Limits, refusals
from .models import Rules
from .ratecontrol import AdaptiveLimiter, Metrics, RetryPolicy, retrying
from .report import (
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    render_plan,
    summary_document,
    task_line,
)
from .runner import Live, PlanItem, Policy, Runner, Scope

T = TypeVar("T")
WORKSPACE_SID_PREFIX = "WS"
WARM_UP = 200  # decisions the guards see before a pipelined run's first write


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, validated by the click layer. Holds no secret in its repr."""

    connection: Connection
    run_id: str
    workspace: str | None = None
    task_queue: str | None = None
    workflow: str | None = None
    task_sids: tuple[str, ...] = ()
    limit: int | None = None
    grace: timedelta = timedelta(minutes=2)
    messaging: bool = False
    wrapping_after: timedelta | None = None
    concurrency: int = 25
    deadline: float = 1800.0
    reason: str = "Orchestration issue: closed stuck voice Task."
    dry_run: bool = False
    assume_yes: bool = False
    audit_log: Path | None = None
    limits: Limits = field(default_factory=Limits)
    save_plan: Path | None = None
    apply_plan: Path | None = None
    max_plan_age: timedelta = timedelta(hours=1)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def rules(self) -> Rules:
        return Rules(grace=self.grace, messaging=self.messaging, wrapping_after=self.wrapping_after)

    @property
    def writes(self) -> bool:
        """False for runs that only plan (``--dry-run``, ``--save-plan``)."""
        return not (self.dry_run or self.save_plan is not None)

    @property
    def reason_text(self) -> str:
        """The Reason written to each task: ties TaskRouter's event history to the audit log."""
        return f"{self.reason} (stuck-tasks run {self.run_id})"


class UI(Protocol):
    """How a run talks to the person (implemented by the click layer)."""

    def info(self, text: str) -> None: ...

    def show_plan(self, text: str) -> None: ...

    def confirm(self, question: str) -> bool: ...

    def can_ask(self) -> bool: ...

    def progress(self, live: Live, metrics: Metrics, *, phase: str) -> None: ...

    def progress_done(self) -> None: ...


@dataclass
class Outcome:
    """What the click layer renders: the summary document, the exit code, refusals."""

    document: dict[str, Any]
    exit_code: int
    refusals: list[str] = field(default_factory=list)
    error: str | None = None  # a fatal error after work had started


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Run:
    """State shared by the phases of one run (they may run in separate event loops)."""

    def __init__(self, settings: Settings, ui: UI) -> None:
        self.settings = settings
        self.ui = ui
        self.metrics = Metrics()
        self.limiter = AdaptiveLimiter(settings.concurrency, metrics=self.metrics)
        self.started = time.monotonic()
        self.retry = RetryPolicy(deadline=self.started + settings.deadline)
        self.account: Named | None = None
        self.workspace: Named | None = None
        self.runner: Runner | None = None
        self.audit: AuditLog | None = None
        self.interrupted = False
        self.aborted_in_flight: list[str] = []
        self.refused: list[str] = []
        self.aborting = False
        self._watcher: asyncio.Task[None] | None = None
        self.saved: planfile.SavedPlan | None = None

    # ------------------------------------------------------------ plumbing

    def _gateway(self) -> TwilioGateway:
        return TwilioGateway(self.settings.connection, limiter=self.limiter, metrics=self.metrics)

    def _phase(self, body: Callable[[TwilioGateway], Coroutine[Any, Any, T]], name: str) -> T:
        """Run one phase in its own event loop, with Ctrl-C/SIGTERM handling and progress."""

        async def main() -> T:
            loop = asyncio.get_running_loop()
            me = asyncio.current_task()
            assert me is not None
            presses = 0

            def on_signal() -> None:
                nonlocal presses
                presses += 1
                self.interrupted = True
                if presses == 1 and self.runner is not None:
                    self.runner.request_stop()
                    self.ui.info(
                        "\nStopping: no new work starts, in-flight requests settle. "
                        "Press Ctrl-C again to abort at once."
                    )
                else:
                    self.aborting = True
                    if self.runner is not None:
                        self.aborted_in_flight = sorted(self.runner.writes_in_flight)
                    me.cancel()

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, on_signal)
            gateway = self._gateway()
            ticker = asyncio.create_task(self._tick(name))
            try:
                return await body(gateway)
            finally:
                ticker.cancel()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
                await gateway.aclose()
                self.ui.progress_done()

        return asyncio.run(main())

    async def _tick(self, phase: str) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.runner is not None:
                self.ui.progress(self.runner.live, self.metrics, phase=phase)

    async def _retrying(self, op: Callable[[], Awaitable[T]]) -> T:
        return await retrying(op, policy=self.retry, metrics=self.metrics)

    # ------------------------------------------------------------ phases

    async def _connect(self, gateway: TwilioGateway) -> None:
        self.account = await self._retrying(gateway.account)
        self.workspace = await self._resolve_workspace(gateway)

    async def _resolve_workspace(self, gateway: TwilioGateway) -> Named:
        wanted = self.settings.workspace
        if not wanted and self.saved is not None:
            wanted = self.saved.workspace_sid
        if wanted and wanted.startswith(WORKSPACE_SID_PREFIX) and len(wanted) == 34:
            try:
                return await self._retrying(lambda: gateway.workspace(wanted))
            except NotFound:
                raise ConfigError(
                    f"workspace {wanted} was not found in account {self._account_sid()}"
                ) from None
        if wanted:
            found = await self._retrying(lambda: gateway.workspaces(friendly_name=wanted))
            exact = [w for w in found if w.friendly_name == wanted]
            if len(exact) == 1:
                return exact[0]
            if len(exact) > 1:
                raise ConfigError(
                    f"{len(exact)} workspaces are named {wanted!r}: "
                    + ", ".join(w.sid for w in exact)
                    + "; pass --workspace with a WS SID"
                )
            every = await self._retrying(lambda: gateway.workspaces())
            raise ConfigError(f"no workspace named {wanted!r}; {_listing(every)}")
        every = await self._retrying(lambda: gateway.workspaces())
        if len(every) == 1:
            self.ui.info(
                f"Using workspace {every[0].friendly_name!r} ({every[0].sid}), "
                "the account's only workspace."
            )
            return every[0]
        raise ConfigError(
            f"choose a workspace with --workspace or TWILIO_WORKSPACE_SID; {_listing(every)}"
        )

    def _account_sid(self) -> str:
        return self.settings.connection.credentials.account_sid

    def _new_runner(self, gateway: TwilioGateway) -> Runner:
        assert self.workspace is not None
        s = self.settings
        filters: dict[str, str] = {}
        if s.task_queue:
            key = "task_queue_sid" if _is_sid(s.task_queue, "WQ") else "task_queue_name"
            filters[key] = s.task_queue
        if s.workflow:
            key = "workflow_sid" if _is_sid(s.workflow, "WW") else "workflow_name"
            filters[key] = s.workflow
        return Runner(
            gateway,
            scope=Scope(self.workspace.sid, filters, s.task_sids, s.limit),
            policy=Policy(rules=s.rules, reason=s.reason_text, now=utcnow),
            retry=self.retry,
            metrics=self.metrics,
            concurrency=s.concurrency,
            on_decided=self._decided,
            on_settled=self._settled,
        )

    async def _plan_phase(self, gateway: TwilioGateway, *, pipelined: bool) -> None:
        await self._connect(gateway)
        self.runner = self._new_runner(gateway)
        if self.saved is not None:
            assert self.account is not None and self.workspace is not None
            planfile.check_applicable(
                self.saved,
                account_sid=self.account.sid,
                workspace_sid=self.workspace.sid,
                max_age=self.settings.max_plan_age,
            )
            self._open_audit()
            self.runner.plan.items.extend(self.saved.items)
            self.runner.plan.listed = len(self.saved.items)
            self.runner.verify_calls = True
            return
        self._open_audit()
        if not pipelined:
            await self.runner.make_plan()
            return
        queue: asyncio.Queue[PlanItem | None] = asyncio.Queue()
        planning = asyncio.create_task(self.runner.make_plan(on_act=queue.put_nowait))
        writers: asyncio.Task[None] | None = None
        try:
            if await self._gate(planning):
                writers = asyncio.create_task(
                    self.runner.drain_writes(queue, recheck=False, close_queue=False)
                )
            await planning  # raises when the listing failed: no write was started then
            await self._check_guards()
        except asyncio.CancelledError:
            if writers is not None:
                writers.cancel()
            raise
        finally:
            if not self.aborting:
                if writers is None:
                    self.runner.halted = self.runner.halted or "the plan did not complete"
                    writers = asyncio.create_task(
                        self.runner.drain_writes(queue, recheck=False, close_queue=False)
                    )
                for _ in range(max(1, self.settings.concurrency)):
                    queue.put_nowait(None)
                await writers

    async def _gate(self, planning: asyncio.Task[Any]) -> bool:
        """Pipelined runs: let writes start once the listing is complete and the guards pass.

        The guards see a warm-up sample first (at least WARM_UP decisions, or all of them);
        the count guard waits for the whole plan when the listing alone could exceed it.
        They are checked again while writes go on, and a trip stops every further write.
        """
        runner = self.runner
        assert runner is not None
        listed = asyncio.create_task(runner.listing_done.wait())
        await asyncio.wait({listed, planning}, return_when=asyncio.FIRST_COMPLETED)
        listed.cancel()
        if not runner.listing_done.is_set():
            return False  # the listing failed or was interrupted: never write
        while True:
            done = planning.done()
            if await self._check_guards():
                return False
            warm = runner.live.examined >= min(runner.live.listed, WARM_UP)
            small = runner.live.listed <= self.settings.limits.max_changes
            if done or (warm and small):
                self._watcher = asyncio.create_task(self._watch_guards(planning))
                return True
            await asyncio.sleep(0.02)

    async def _watch_guards(self, planning: asyncio.Task[Any]) -> None:
        while not planning.done():
            if await self._check_guards():
                return
            await asyncio.sleep(0.1)

    async def _check_guards(self) -> bool:
        runner = self.runner
        assert runner is not None
        if runner.halted is not None and self.refused:
            return True
        found = refusals(Counts.of(runner.plan.items), self.settings.limits)
        if found:
            self.refused = found
            runner.halted = "refused by a guard: " + "; ".join(found)
            return True
        return False

    async def _apply_phase(self, gateway: TwilioGateway) -> None:
        assert self.runner is not None
        self.runner.use_gateway(gateway)
        await self.runner.apply(self.runner.plan.to_close, recheck=True)

    # ------------------------------------------------------------ audit

    def _open_audit(self) -> None:
        s = self.settings
        path = s.audit_log
        if path is None and s.writes:
            path = Path(f"stuck-tasks-audit-{s.run_id}.jsonl")
        if path is None:
            return
        self.audit = AuditLog(path)
        assert self.account is not None and self.workspace is not None
        self.audit.write(self._header())

    def _header(self) -> dict[str, Any]:
        s = self.settings
        return {
            "type": "header",
            "run_id": s.run_id,
            "tool_version": __version__,
            "started_at": utcnow().isoformat().replace("+00:00", "Z"),
            "account_sid": self.account.sid if self.account else self._account_sid(),
            "account_name": self.account.friendly_name if self.account else None,
            "workspace_sid": self.workspace.sid if self.workspace else None,
            "workspace_name": self.workspace.friendly_name if self.workspace else None,
            "dry_run": not s.writes,
            "options": s.options,
        }

    def _decided(self, item: PlanItem) -> None:
        if not item.decision.acts and self.audit is not None:
            self.audit.write(task_line(item, at=utcnow(), dry_run=not self.settings.writes))

    def _settled(self, item: PlanItem) -> None:
        if self.audit is not None:
            self.audit.write(task_line(item, at=utcnow(), dry_run=not self.settings.writes))

    # ------------------------------------------------------------ the whole run

    def execute(self) -> Outcome:
        s = self.settings
        if s.apply_plan is not None:
            self.saved = planfile.load(s.apply_plan)
        pipelined = s.assume_yes and s.writes and self.saved is None
        exit_code: int | None = None
        error: str | None = None
        try:
            try:
                self._phase(lambda gw: self._plan_phase(gw, pipelined=pipelined), "plan")
            except asyncio.CancelledError:
                self.interrupted = True
            if self.refused:
                exit_code = EXIT_USAGE
            elif self.runner is not None and not pipelined and not self.interrupted:
                exit_code = self._after_planning()
        except (ConfigError, AuthError):
            raise
        except StuckTasksError as fatal:
            if self.runner is None:
                raise  # nothing was examined: one line is the whole story
            error, exit_code = str(fatal), EXIT_FATAL  # work was done: the summary must say what
        finally:
            document = self._finish(exit_code)
            if self.audit is not None:
                self.audit.close()
        return Outcome(document, document["exit_code"], list(self.refused), error)

    def _after_planning(self) -> int | None:
        """Show the plan, check the guards, save or confirm, then apply."""
        runner = self.runner
        assert runner is not None
        s = self.settings
        assert self.account is not None and self.workspace is not None
        target = (
            f"workspace {self.workspace.friendly_name!r} ({self.workspace.sid}) of account "
            f"{self.account.friendly_name!r} ({self.account.sid})"
        )
        self.ui.show_plan(render_plan(runner.plan.items, now=utcnow(), target=target))
        found = refusals(Counts.of(runner.plan.items), s.limits) if s.writes else []
        if found:
            self.refused = found
            return EXIT_USAGE
        if s.save_plan is not None:
            assert self.account is not None and self.workspace is not None
            planfile.save(
                s.save_plan,
                planfile.SavedPlan(
                    run_id=s.run_id,
                    created_at=utcnow(),
                    account_sid=self.account.sid,
                    workspace_sid=self.workspace.sid,
                    workspace_name=self.workspace.friendly_name,
                    grace_seconds=s.grace.total_seconds(),
                    items=runner.plan.items,
                ),
            )
            self.ui.info(f"Plan saved to {s.save_plan}; apply it with --apply-plan {s.save_plan}")
            return None
        if s.dry_run or not runner.plan.to_close:
            return None
        if not self._confirmed(len(runner.plan.to_close)):
            return None
        try:
            self._phase(self._apply_phase, "apply")
        except asyncio.CancelledError:
            self.interrupted = True
        return None

    def _confirmed(self, count: int) -> bool:
        assert self.account is not None and self.workspace is not None
        if self.settings.assume_yes:
            return True
        if not self.ui.can_ask():
            raise ConfigError(
                "standard input is not a terminal, so there is no one to confirm: "
                "re-run with --yes to apply this plan, or with --dry-run to only preview it"
            )
        question = (
            f"Close {count} tasks in workspace {self.workspace.friendly_name!r} ({self.workspace.sid}) "
            f"of account {self.account.friendly_name!r} ({self.account.sid})?"
        )
        if self.ui.confirm(question):
            return True
        self.ui.info("Nothing was changed.")
        return False

    def _finish(self, exit_code: int | None) -> dict[str, Any]:
        items = self.runner.plan.items if self.runner else []
        now = utcnow()
        lines = []
        for item in items:
            line = task_line(item, at=now, dry_run=not self.settings.writes)
            if item.decision.acts and item.result is None and self.audit is not None:
                self.audit.write(line)
            lines.append(line)
        in_flight = self.aborted_in_flight
        document = summary_document(
            self._header(),
            lines,
            metrics=self.metrics.as_dict(),
            elapsed=time.monotonic() - self.started,
            interrupted=self.interrupted,
            exit_code=EXIT_INTERRUPTED if self.interrupted else exit_code,
            audit_log=str(self.audit.path) if self.audit else None,
            in_flight=in_flight,
        )
        if self.audit is not None:
            self.audit.write({"type": "footer", **document})
        return document


def _is_sid(value: str, prefix: str) -> bool:
    return len(value) == 34 and value.startswith(prefix)


def _listing(workspaces: list[Named]) -> str:
    if not workspaces:
        return "the account has no TaskRouter workspace"
    names = ", ".join(f"{w.friendly_name!r} ({w.sid})" for w in workspaces)
    return f"the account's workspaces: {names}"
