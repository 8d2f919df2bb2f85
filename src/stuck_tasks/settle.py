"""The fourth stage: one write, tried until its outcome is known. One loop for every write kind.

The loop: (read the task again when needed) -> send -> classify the answer -> settle an unknown
outcome by reading the task -> back off -> give up. It never re-POSTs blindly: a write that may
have reached Twilio (a timeout, a 5xx, a dropped connection, an answer that is not understood)
is followed by a read of the task before anything else, and a later refusal (412, 20001, 404,
80906) is checked against that read too, because the earlier try may have landed late and be
the very change the refusal reports.

Two small strategies say what differs:
- ``TaskStatusWrite``: TaskRouter's ``AssignmentStatus`` with ``If-Match`` (the ETag of the read
  the decision was made on); ours when the task shows our status and our ``Reason``.
- ``InteractionWrite``: Flex's Interactions API (close the agent's participant, or the channel
  with Routing closed). It has no ``If-Match``, so the task is read right before every attempt;
  ours when the task is completed or canceled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from .errors import (
    ApiError,
    AuthError,
    BadResponse,
    DeadlineExceeded,
    NotFound,
    PermissionDenied,
    Stopped,
    StuckTasksError,
    TransportError,
    describe,
)
from .models import Action, ApplyResult, Case, Gateway, Outcome, TaskRecord
from .ratecontrol import ATTEMPT, Reads, StopReason, Tries

FATAL = (AuthError, DeadlineExceeded)


class Strategy(Protocol):
    """What differs between write kinds."""

    @property
    def read_each_attempt(self) -> bool:
        """No If-Match: read the task right before every attempt."""
        ...

    def send(
        self, gw: Gateway, workspace_sid: str, case: Case, etag: str | None
    ) -> Awaitable[str | None]:
        """Make the write; returns the task's status after it when the answer tells."""
        ...

    def refused(self, error: ApiError, attempts: int) -> ApplyResult | None:
        """An answer that means the platform got there first (skipped), or None."""
        ...

    def landed(self, fresh: TaskRecord) -> bool:
        """Whether the task, read again, shows that our write was applied."""
        ...


@dataclass(frozen=True)
class TaskStatusWrite:
    """Cancel or complete through TaskRouter, with If-Match."""

    target: str
    reason: str
    read_each_attempt: bool = False

    async def send(
        self, gw: Gateway, workspace_sid: str, case: Case, etag: str | None
    ) -> str | None:
        written = await gw.update_task(
            workspace_sid, case.sid, status=self.target, reason=self.reason, if_match=etag
        )
        if written.status != self.target:
            # A success that names another status is not understood: the task, read again,
            # says what the write did (the record must not say "closed -> pending").
            raise BadResponse(
                f"Twilio's answer to the update said the task is {written.status!r}, "
                f"not {self.target!r}"
            )
        return written.status

    def refused(self, error: ApiError, attempts: int) -> ApplyResult | None:
        if error.status == 412 or error.code == 20412:
            return skip("changed-412", "the task changed since it was read (412)", attempts)
        if error.code == 20001:
            return skip(
                "refused-20001", f"Twilio refused the transition: {error.message}", attempts
            )
        if isinstance(error, NotFound):
            return skip("gone-404", "the task no longer exists (404)", attempts)
        return None

    def landed(self, fresh: TaskRecord) -> bool:
        return fresh.status == self.target and fresh.twilio_reason == self.reason


@dataclass(frozen=True)
class InteractionWrite:
    """Close through Flex's Interactions API: the agent's participant, or the channel."""

    read_each_attempt: bool = True

    async def send(
        self, gw: Gateway, workspace_sid: str, case: Case, etag: str | None
    ) -> str | None:
        refs = case.task.refs
        assert refs is not None and refs.interaction_sid and refs.channel_sid
        participant = case.decision.participant_sid
        if case.decision.action is Action.CLOSE_PARTICIPANT:
            assert participant is not None
            await gw.close_participant(refs.interaction_sid, refs.channel_sid, participant)
        else:
            await gw.close_channel(refs.interaction_sid, refs.channel_sid)
        return None

    def refused(self, error: ApiError, attempts: int) -> ApplyResult | None:
        if error.code == 80906:
            return skip("interaction-not-open", f"Twilio: {error.message} (80906)", attempts)
        if error.code == 20001:
            return skip("refused-20001", f"Twilio refused the close: {error.message}", attempts)
        if isinstance(error, NotFound):
            return skip(
                "gone-404", "the interaction channel or participant is gone (404)", attempts
            )
        return None

    def landed(self, fresh: TaskRecord) -> bool:
        return fresh.status in ("completed", "canceled")


def strategy_for(case: Case, *, reason: str) -> Strategy:
    action = case.decision.action
    if action.uses_task_api:
        return TaskStatusWrite(action.target_status, reason)
    return InteractionWrite()


def skip(why: str, detail: str, attempts: int, status_after: str | None = None) -> ApplyResult:
    return ApplyResult(Outcome.SKIPPED, why, detail, status_after=status_after, attempts=attempts)


def closed(
    case: Case, status: str | None, attempts: int, *, confirmed: bool = False
) -> ApplyResult:
    how = " (confirmed by re-read)" if confirmed else ""
    return ApplyResult(
        Outcome.CLOSED,
        "closed",
        f"{case.task.status} -> {status or '?'}{how}",
        status_after=status,
        attempts=attempts,
    )


Recheck = Callable[[Case, TaskRecord], Awaitable["ApplyResult | Case"]]


@dataclass(frozen=True)
class Settler:
    """Settles the writes of one workspace.

    ``fresh_first``: read each task before its first attempt even when the plan holds an ETag
    (confirmed and saved plans: minutes may have passed). ``recheck``: re-decide on that read
    (saved plans re-check the evidence itself); returns the case to write, or a result.
    """

    gateway: Gateway
    workspace_sid: str
    reason: str
    reads: Reads
    fresh_first: bool = False
    recheck: Recheck | None = None

    async def settle(self, case: Case) -> ApplyResult:
        """The outcome of ``case``'s write. Never raises (but for cancellation): a fatal error
        stops the run through ``reads.stop`` and the result says how far the write got."""
        strategy = strategy_for(case, reason=self.reason)
        state = _Try()
        try:
            return await self._loop(case, strategy, state)
        except FATAL as error:
            self.reads.stop.fail(error)
            return self._cut_short(state, describe(error))
        except StuckTasksError as error:  # anything else unexpected from a lower layer
            return self._cut_short(state, describe(error))

    async def _loop(self, case: Case, strategy: Strategy, state: _Try) -> ApplyResult:
        stop = self.reads.stop
        policy = self.reads.policy
        etag = None if self.fresh_first else case.task.etag
        rechecked = self.recheck is None
        tries = Tries()
        while True:
            if etag is None or strategy.read_each_attempt:
                fresh = await self._reread(case, strategy, state, decided_on=rechecked)
                if isinstance(fresh, ApplyResult):
                    return fresh
                if not rechecked and not state.sent:
                    assert self.recheck is not None
                    again = await self.recheck(case, fresh)
                    if isinstance(again, ApplyResult):
                        return again
                    case, strategy, rechecked = again, strategy_for(again, reason=self.reason), True
                etag = fresh.etag
            if stop.requested and not state.sent:
                return self._not_started(state)
            if etag is None and not strategy.read_each_attempt:
                # Twilio's answer carried no ETag: the write would not be conditional.
                return ApplyResult(
                    Outcome.SKIPPED,
                    "no-etag",
                    "Twilio's answer carried no ETag, so the write could not be made with If-Match",
                    attempts=state.attempts,
                )
            state.attempts += 1
            token = ATTEMPT.set(state.attempts)
            try:
                after = await strategy.send(self.gateway, self.workspace_sid, case, etag)
            except Stopped:
                if not state.sent:
                    return self._not_started(state)
                return self._cut_short(state, "the run stopped before the write was tried again")
            except PermissionDenied:
                raise  # 403/70051: refused before anything was applied
            except AuthError as error:
                # Twilio refuses credentials before it applies anything; the record still says
                # "unknown" rather than "not attempted" for a write it was sent, because a
                # 401/403 from something in between (a proxy) proves nothing either way.
                self.reads.stop.fail(error)
                state.sent = True
                return self._cut_short(state, describe(error))
            except FATAL:
                raise
            except ApiError as error:
                refused = strategy.refused(error, state.attempts)
                if refused is not None:
                    # The refusal may report our own earlier try, landed late, or come from
                    # something in between that lies: the task, read again, says.
                    confirmed = await self._confirm(case, strategy, state)
                    if confirmed is not None:
                        return confirmed
                    return refused
                if not error.retryable:
                    # Any other refusal is read back too (found by the fuzz proxy: a 400 for a
                    # write that was applied); only a refusal the task does not contradict
                    # is a failure.
                    confirmed = await self._confirm(case, strategy, state)
                    if confirmed is not None:
                        return confirmed
                    return failed(error, state.attempts)
                if error.status != 429:  # a 5xx: Twilio may or may not have applied it
                    state.sent, etag = True, None
                last: Exception = error
            except TransportError as error:
                if error.sent:
                    state.sent, etag = True, None
                last = error
            except BadResponse as error:
                # An answer that is not understood says nothing of the outcome: read the task.
                state.sent, etag = True, None
                last = error
            else:
                if strategy.read_each_attempt:
                    after = await self._status_after(case)
                return closed(case, after, state.attempts)
            finally:
                ATTEMPT.reset(token)
            if not tries.count(last, policy):
                if state.sent:
                    confirmed = await self._confirm(case, strategy, state)
                    if confirmed is not None:
                        return confirmed
                return failed(last, state.attempts)
            if stop.requested and not state.sent:
                return self._not_started(state)
            await self.reads.backoff(tries.delay(last, policy), interruptible=not state.sent)

    async def _read(self, case: Case) -> TaskRecord:
        return await self.reads.call(
            lambda: self.gateway.fetch_task(self.workspace_sid, case.sid), settling=True
        )

    async def _reread(
        self, case: Case, strategy: Strategy, state: _Try, *, decided_on: bool
    ) -> TaskRecord | ApplyResult:
        """Read the task before (re)writing: the fresh record, or the settled result.

        ``decided_on``: the case's decision was made on ``case.task`` (not yet to be re-decided
        on this read, as a saved plan's is). Before anything is sent, a task that changed since
        then in any way is skipped: its ETag (or, for a listed row without one, its
        ``date_updated``) moved. The status and the evidence are not all a decision reads (an
        abandoned wrap-up is judged on ``date_updated``), and writing with the fresh ETag would
        overwrite whatever changed."""
        task = case.task
        try:
            fresh = await self._read(case)
        except FATAL:
            raise
        except NotFound:
            return skip("gone-404", "the task no longer exists (404)", state.attempts)
        except StuckTasksError as error:
            if state.sent:
                return unknown(
                    f"the write was sent; reading it back failed: {describe(error)}", state.attempts
                )
            return ApplyResult(
                Outcome.FAILED, "recheck-failed", describe(error), attempts=state.attempts
            )
        if state.sent and strategy.landed(fresh):
            return closed(case, fresh.status, state.attempts, confirmed=True)
        if fresh.status != task.status:
            return skip(
                f"now-{fresh.status}", f"task is now {fresh.status}", state.attempts, fresh.status
            )
        if fresh.refs != task.refs or fresh.attributes_problem != task.attributes_problem:
            return skip("attributes-changed", "the task's evidence changed", state.attempts)
        if decided_on and not state.sent and _changed(task, fresh):
            return skip(
                "changed-since-read", "the task changed since it was examined", state.attempts
            )
        return fresh

    async def _confirm(self, case: Case, strategy: Strategy, state: _Try) -> ApplyResult | None:
        """After a try that may have landed: closed if the task shows it, else None.

        A fatal error on this read (credentials revoked, the deadline) stops the run, but the
        write it follows was sent: its result is settled here, never "not attempted"."""
        try:
            fresh = await self._read(case)
        except NotFound:
            return None
        except StuckTasksError as error:
            if isinstance(error, FATAL):
                self.reads.stop.fail(error)
            if not state.sent:
                return None  # nothing of ours can have landed: the refusal stands
            return unknown(
                f"the write was sent; reading it back failed: {describe(error)}", state.attempts
            )
        return (
            closed(case, fresh.status, state.attempts, confirmed=True)
            if strategy.landed(fresh)
            else None
        )

    async def _status_after(self, case: Case) -> str | None:
        """The task's status after a write Twilio accepted: the write is closed whatever this
        read meets (a fatal error stops the run, and the status after is unknown)."""
        try:
            return (await self._read(case)).status
        except StuckTasksError as error:
            if isinstance(error, FATAL):
                self.reads.stop.fail(error)
            return None

    def _not_started(self, state: _Try) -> ApplyResult:
        stop = self.reads.stop
        why = "interrupted" if stop.reason is StopReason.INTERRUPTED else "stopped-by-error"
        detail = (
            "the run was interrupted first"
            if why == "interrupted"
            else f"the run stopped: {stop.error}"
        )
        return ApplyResult(Outcome.NOT_ATTEMPTED, why, detail, attempts=state.attempts)

    def _cut_short(self, state: _Try, detail: str) -> ApplyResult:
        if state.sent:
            return unknown(f"the write was sent, then the run stopped: {detail}", state.attempts)
        return ApplyResult(
            Outcome.NOT_ATTEMPTED, "stopped-by-error", detail, attempts=state.attempts
        )


def _changed(decided: TaskRecord, fresh: TaskRecord) -> bool:
    """Whether ``fresh`` is another version of the task than the one decided on."""
    if decided.etag is not None:
        return fresh.etag != decided.etag
    return decided.date_updated is not None and fresh.date_updated != decided.date_updated


@dataclass
class _Try:
    """How far one write got: attempts made, and whether one may have reached Twilio."""

    attempts: int = 0
    sent: bool = False


def failed(error: Exception, attempts: int) -> ApplyResult:
    api = error if isinstance(error, ApiError) else None
    why = (
        f"error-{api.code if api.code is not None else api.status}"
        if api is not None
        else "bad-answer"
        if isinstance(error, BadResponse)
        else "transport"
    )
    return ApplyResult(
        Outcome.FAILED,
        why,
        f"gave up after {attempts} attempts: {describe(error)}",
        code=api.code if api is not None else None,
        attempts=attempts,
    )


def unknown(detail: str, attempts: int) -> ApplyResult:
    return ApplyResult(Outcome.UNKNOWN, "unknown-outcome", detail, attempts=attempts)
