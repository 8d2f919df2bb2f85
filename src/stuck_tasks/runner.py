"""Plan, then apply, with bounded concurrency and one retry policy.

Reads (list pages, task fetches, call fetches) overlap freely. Writes never start while the
listing is still paging: how Twilio's page tokens behave while tasks change is undocumented, and
if they are offsets, closing tasks mid-listing would make later pages skip others.

Every write is conditional: ``If-Match`` carries the ETag of the read the decision was made on.
A write whose outcome is unknown (timeout, 5xx, dropped connection) is settled by reading the
task again, never by a blind re-POST.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar, cast

from .decide import CLOSED_CHANNEL_STATUSES, decide, is_messaging
from .errors import ApiError, AuthError, NotFound, StuckTasksError, TransportError
from .models import (
    OPEN_STATUSES,
    TERMINAL_CALL_STATUSES,
    VOICE_CHANNEL,
    Action,
    ApplyResult,
    CallFacts,
    ChannelFacts,
    ConferenceFacts,
    ConversationFacts,
    Decision,
    Evidence,
    Missing,
    Outcome,
    ParticipantFacts,
    Reason,
    Refs,
    Rules,
    TaskRecord,
)
from .ratecontrol import Metrics, RetryPolicy, backoff, retrying

T = TypeVar("T")


class Gateway(Protocol):
    """What the runner needs from Twilio (``gateway.TwilioGateway`` implements it)."""

    def task_pages(
        self,
        workspace_sid: str,
        *,
        statuses: tuple[str, ...],
        filters: Mapping[str, str],
        fetch_page: Callable[[Callable[[], Any]], Any],
    ) -> Any: ...

    async def fetch_task(self, workspace_sid: str, sid: str) -> tuple[TaskRecord, str | None]: ...

    async def fetch_call(self, sid: str) -> CallFacts: ...

    async def fetch_conference(self, sid: str) -> ConferenceFacts: ...

    async def conferences_named(self, friendly_name: str) -> list[ConferenceFacts]: ...

    async def fetch_channel(self, interaction_sid: str, channel_sid: str) -> ChannelFacts: ...

    async def channel_participants(
        self, interaction_sid: str, channel_sid: str
    ) -> list[tuple[str, str, dict[str, Any]]]: ...

    async def fetch_conversation(self, sid: str) -> ConversationFacts: ...

    async def close_participant(
        self, interaction_sid: str, channel_sid: str, participant_sid: str
    ) -> None: ...

    async def close_channel(self, interaction_sid: str, channel_sid: str) -> None: ...

    async def update_task(
        self, workspace_sid: str, sid: str, *, status: str, reason: str, if_match: str | None
    ) -> Any: ...


@dataclass(frozen=True)
class Scope:
    """Which tasks a run looks at."""

    workspace_sid: str
    filters: Mapping[str, str] = field(default_factory=dict)  # twilio list kwargs
    task_sids: tuple[str, ...] = ()
    limit: int | None = None


@dataclass(frozen=True)
class Policy:
    """How decisions and writes are made."""

    rules: Rules
    reason: str  # the Reason text written to each closed task (carries the run id)
    now: Callable[[], datetime]

    @property
    def statuses(self) -> tuple[str, ...]:
        """The statuses the listing asks for."""
        return OPEN_STATUSES + (("wrapping",) if self.rules.wrapping_after is not None else ())


@dataclass(slots=True)
class PlanItem:
    """One examined task: its record, the verdict, the call evidence, and what happened."""

    task: TaskRecord
    decision: Decision
    call_status: str | None = None
    call_ended_at: datetime | None = None
    participant_sid: str | None = None  # the agent participant to close (messaging)
    result: ApplyResult | None = None


@dataclass
class Plan:
    """Everything examined so far, in the order decisions settled."""

    items: list[PlanItem] = field(default_factory=list)
    listed: int = 0

    @property
    def to_close(self) -> list[PlanItem]:
        return [i for i in self.items if i.decision.acts]


@dataclass
class Live:
    """Counters a progress display reads while the run goes on."""

    listed: int = 0
    examined: int = 0
    to_close: int = 0
    settled: int = 0
    closed: int = 0
    started: float = field(default_factory=time.monotonic)


Listener = Callable[[PlanItem], None]


class Runner:
    """Runs one plan (and, when allowed, its writes) against one workspace."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        scope: Scope,
        policy: Policy,
        retry: RetryPolicy,
        metrics: Metrics,
        concurrency: int,
        on_decided: Listener | None = None,
        on_settled: Listener | None = None,
    ) -> None:
        self._gw = gateway
        self.listing_done = asyncio.Event()
        self.scope = scope
        self.policy = policy
        self.retry = retry
        self.metrics = metrics
        self.concurrency = concurrency
        self.plan = Plan()
        self.live = Live()
        self.stop_requested = False
        self.halted: str | None = None  # a guard tripped: no further writes
        self.verify_calls = False  # saved plans: re-check the call before each write
        self.writes_in_flight: set[str] = set()
        self._lookups: dict[tuple[str, str], asyncio.Future[object]] = {}
        self._on_decided = on_decided
        self._on_settled = on_settled

    # ---------------------------------------------------------------- control

    def use_gateway(self, gateway: Gateway) -> None:
        """Each phase of a run has its own event loop, so its own gateway."""
        self._gw = gateway

    def request_stop(self) -> None:
        """Ctrl-C: start no new work; what is in flight settles."""
        self.stop_requested = True

    def _stopping(self) -> bool:
        return self.stop_requested

    async def _read(self, op: Callable[[], Awaitable[T]]) -> T:
        return await retrying(
            op, policy=self.retry, metrics=self.metrics, should_stop=self._stopping
        )

    # ---------------------------------------------------------------- planning

    async def make_plan(self, *, on_act: Callable[[PlanItem], None] | None = None) -> Plan:
        """List (or take the given SIDs), read what each task needs, and decide every task.

        ``on_act`` receives each task to close as soon as it is decided (pipelined runs).
        """
        queue: asyncio.Queue[TaskRecord | None] = asyncio.Queue(maxsize=self.concurrency * 4)
        workers = [
            asyncio.create_task(self._examine_worker(queue, on_act))
            for _ in range(max(1, self.concurrency))
        ]
        try:
            await self._feed(queue)
        except BaseException:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        if not self.stop_requested:
            self.listing_done.set()  # only a complete listing lets writes start
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
        return self.plan

    async def _feed(self, queue: asyncio.Queue[TaskRecord | None]) -> None:
        if self.scope.task_sids:
            for sid in self.scope.task_sids:
                if self.stop_requested:
                    return
                self.plan.listed += 1
                self.live.listed += 1
                # Status unknown until fetched: the examine step reads it.
                await queue.put(TaskRecord(sid=sid, status="?", channel="?"))
            return
        pages = self._gw.task_pages(
            self.scope.workspace_sid,
            statuses=self.policy.statuses,
            filters=self.scope.filters,
            fetch_page=self._read,
        )
        limit = self.scope.limit
        seen: set[str] = set()
        async for page in pages:
            for record in page:
                if self.stop_requested or (limit is not None and self.plan.listed >= limit):
                    return
                if record.sid in seen:
                    continue  # a page token that repeats items (undocumented): examine once
                seen.add(record.sid)
                self.plan.listed += 1
                self.live.listed += 1
                await queue.put(record)

    async def _examine_worker(
        self, queue: asyncio.Queue[TaskRecord | None], on_act: Callable[[PlanItem], None] | None
    ) -> None:
        while True:
            record = await queue.get()
            if record is None:
                return
            if self.stop_requested:
                continue  # drain: not examined
            item = await self._examine(record)
            self.plan.items.append(item)
            self.live.examined += 1
            if item.decision.acts:
                self.live.to_close += 1
            if self._on_decided is not None:
                self._on_decided(item)
            if item.decision.acts and on_act is not None:
                on_act(item)

    async def _examine(self, record: TaskRecord) -> PlanItem:
        if record.status == "?" or (self._relevant(record) and not record.attributes_read):
            try:
                record, _ = await self._read(
                    lambda: self._gw.fetch_task(self.scope.workspace_sid, record.sid)
                )
            except NotFound:
                return PlanItem(record, Decision(Action.LEAVE, Reason.TASK_NOT_FOUND, "404"))
            except AuthError:
                raise
            except StuckTasksError as error:
                detail = f"task could not be read: {_describe(error)}"
                return PlanItem(record, Decision(Action.LEAVE, Reason.TASK_FETCH_FAILED, detail))
        evidence = await self._evidence(record) if self._relevant(record) else Evidence()
        decision = decide(record, evidence, now=self.policy.now(), rules=self.policy.rules)
        item = PlanItem(record, decision)
        if isinstance(evidence.call, CallFacts):
            item.call_status = evidence.call.status
            if evidence.call.status in TERMINAL_CALL_STATUSES:  # a live call has no end yet
                item.call_ended_at = evidence.call.ended_at
        elif isinstance(evidence.conference, ConferenceFacts):
            item.call_status = f"conference {evidence.conference.status}"
            if evidence.conference.status == "completed":
                item.call_ended_at = evidence.conference.date_updated
        if evidence.agent is not None:
            item.participant_sid = evidence.agent.sid
        return item

    def _relevant(self, record: TaskRecord) -> bool:
        """Tasks whose decision needs their attributes (and then lookups)."""
        rules = self.policy.rules
        if record.channel == VOICE_CHANNEL:
            return record.status in OPEN_STATUSES or (
                record.status == "wrapping" and rules.wrapping_after is not None
            )
        return rules.messaging and record.status in OPEN_STATUSES

    async def _evidence(self, task: TaskRecord) -> Evidence:
        """Make exactly the lookups the decision needs, concurrently, each once per run."""
        refs = task.refs
        if refs is None or task.attributes_problem is not None:
            return Evidence()
        if task.channel == VOICE_CHANNEL:
            if task.status == "wrapping":
                call = await self._lookup_call(refs.call_sid) if refs.call_sid else None
                return Evidence(call=call)
            return await self._voice_evidence(task.sid, refs)
        if is_messaging(task) and refs.interaction_sid and not refs.legacy_chat:
            return await self._messaging_evidence(task.sid, refs)
        return Evidence()

    async def _voice_evidence(self, task_sid: str, refs: Refs) -> Evidence:
        extra = [c for c in refs.participant_calls if c != refs.call_sid]
        if not (refs.call_sid or refs.conference_sid or extra):
            return Evidence(conference=await self._conference_named(task_sid))
        call = asyncio.ensure_future(self._lookup_call(refs.call_sid)) if refs.call_sid else None
        conference = (
            asyncio.ensure_future(self._lookup_conference(refs.conference_sid))
            if refs.conference_sid
            else None
        )
        participants = await asyncio.gather(*(self._lookup_call(c) for c in extra))
        return Evidence(
            call=await call if call else None,
            conference=await conference if conference else None,
            participant_calls=tuple(participants),
        )

    async def _messaging_evidence(self, task_sid: str, refs: Refs) -> Evidence:
        assert refs.interaction_sid is not None
        assert refs.channel_sid is not None
        kd, uo = refs.interaction_sid, refs.channel_sid
        channel = await self._lookup(
            ("channel", uo),
            lambda: self._gw.fetch_channel(kd, uo),
            Reason.CHANNEL_NOT_FOUND,
            Reason.CHANNEL_LOOKUP_FAILED,
        )
        if isinstance(channel, ChannelFacts) and channel.status in CLOSED_CHANNEL_STATUSES:
            try:
                participants = await self._read(lambda: self._gw.channel_participants(kd, uo))
            except StuckTasksError:
                return Evidence(channel=Missing(Reason.CHANNEL_LOOKUP_FAILED))
            return Evidence(channel=channel, agent=agent_of(task_sid, participants))
        conversation = None
        if (
            isinstance(channel, ChannelFacts)
            and channel.status == "active"
            and refs.conversation_sid
        ):
            ch = refs.conversation_sid
            conversation = await self._lookup(
                ("conversation", ch),
                lambda: self._gw.fetch_conversation(ch),
                Reason.CONVERSATION_NOT_FOUND,
                Reason.CONVERSATION_LOOKUP_FAILED,
            )
        return Evidence(channel=channel, conversation=conversation)

    async def _lookup_call(self, sid: str) -> CallFacts | Missing:
        return await self._lookup(
            ("call", sid),
            lambda: self._gw.fetch_call(sid),
            Reason.CALL_NOT_FOUND,
            Reason.CALL_LOOKUP_FAILED,
        )

    async def _lookup_conference(self, sid: str) -> ConferenceFacts | Missing:
        return await self._lookup(
            ("conference", sid),
            lambda: self._gw.fetch_conference(sid),
            Reason.CONFERENCE_NOT_FOUND,
            Reason.CONFERENCE_LOOKUP_FAILED,
        )

    async def _conference_named(self, task_sid: str) -> ConferenceFacts | Missing:
        async def newest() -> ConferenceFacts:
            found: list[ConferenceFacts] = await self._gw.conferences_named(task_sid)
            if not found:
                raise NotFound(404, 20404, "no conference is named after the task")
            live = [c for c in found if c.status != "completed"]
            return live[0] if live else max(found, key=lambda c: c.date_updated or _EPOCH)

        return await self._lookup(
            ("conference-named", task_sid),
            newest,
            Reason.CONFERENCE_NOT_FOUND,
            Reason.CONFERENCE_LOOKUP_FAILED,
        )

    async def _lookup(
        self,
        key: tuple[str, str],
        op: Callable[[], Awaitable[T]],
        not_found: Reason,
        failed: Reason,
    ) -> T | Missing:
        """Read once per run, even when several tasks name the same resource."""
        known = self._lookups.get(key)
        if known is not None:
            return cast("T | Missing", await asyncio.shield(known))
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._lookups[key] = future
        result: T | Missing
        try:
            result = await self._read(op)
        except NotFound as error:
            result = Missing(not_found, error.code)
        except ApiError as error:
            result = Missing(failed, error.code)
        except StuckTasksError:
            result = Missing(failed, None)
        except BaseException:
            future.cancel()
            raise
        future.set_result(result)
        return result

    # ---------------------------------------------------------------- applying

    async def apply(self, items: Iterable[PlanItem], *, recheck: bool) -> None:
        """Close the planned tasks. ``recheck`` re-reads each task first (time has passed)."""
        queue: asyncio.Queue[PlanItem | None] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)
        await self.drain_writes(queue, recheck=recheck, close_queue=True)

    async def drain_writes(
        self, queue: asyncio.Queue[PlanItem | None], *, recheck: bool, close_queue: bool
    ) -> None:
        """Run write workers over ``queue`` until each of them takes a ``None``."""
        workers = [
            asyncio.create_task(self._write_worker(queue, recheck=recheck))
            for _ in range(max(1, self.concurrency))
        ]
        if close_queue:
            for _ in workers:
                queue.put_nowait(None)
        await asyncio.gather(*workers)

    async def _write_worker(self, queue: asyncio.Queue[PlanItem | None], *, recheck: bool) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            if self.stop_requested:
                item.result = ApplyResult(
                    Outcome.NOT_ATTEMPTED, "interrupted", "the run was interrupted first"
                )
            elif self.halted is not None:
                item.result = ApplyResult(Outcome.NOT_ATTEMPTED, "guard-refused", self.halted)
            else:
                self.writes_in_flight.add(item.task.sid)
                try:
                    item.result = await self._apply_one(item, recheck=recheck)
                finally:
                    self.writes_in_flight.discard(item.task.sid)
                if item.result.outcome is Outcome.CLOSED:
                    self.live.closed += 1
            self.live.settled += 1
            if self._on_settled is not None:
                self._on_settled(item)

    async def _apply_one(self, item: PlanItem, *, recheck: bool) -> ApplyResult:
        if not item.decision.action.uses_task_api:
            return await self._apply_interaction(item)
        task = item.task
        target = item.decision.action.target_status
        etag = None if recheck else task.etag
        attempts = 0
        sent_once = False
        while True:
            if etag is None:
                settled, etag = await self._reread(
                    item, target, sent_once=sent_once, attempts=attempts
                )
                if settled is not None:
                    return settled
            attempts += 1
            try:
                written = await self._gw.update_task(
                    self.scope.workspace_sid,
                    task.sid,
                    status=target,
                    reason=self.policy.reason,
                    if_match=etag,
                )
            except ApiError as error:
                verdict = _write_refused(error, attempts)
                if verdict is not None:
                    if sent_once and verdict.outcome is Outcome.SKIPPED:
                        # An earlier try that timed out may have landed since, and be the very
                        # change this 412/20001/404 reports: read the task to know whose it was.
                        settled, _ = await self._reread(
                            item, target, sent_once=True, attempts=attempts
                        )
                        if settled is not None:
                            return settled
                    return verdict
                if error.status != 429:
                    # 5xx: Twilio may or may not have applied it; settle by reading, never re-POST.
                    sent_once = True
                    etag = None
                last: StuckTasksError = error
            except TransportError as error:
                if error.sent:  # it may have reached Twilio: settle by reading
                    sent_once = True
                    etag = None
                last = error
            else:
                return ApplyResult(
                    Outcome.CLOSED,
                    "closed",
                    f"{task.status} -> {written.status}",
                    status_after=written.status,
                    attempts=attempts,
                )
            given_up = self._given_up(last, attempts, sent_once=sent_once)
            if given_up is not None:
                if sent_once and given_up.outcome is Outcome.FAILED:
                    # The last try may have landed: the summary must say what really happened.
                    settled, _ = await self._reread(item, target, sent_once=True, attempts=attempts)
                    if settled is not None:
                        return settled
                return given_up
            await backoff(self.retry, self.metrics, attempts, last)

    def _given_up(
        self, last: StuckTasksError, attempts: int, *, sent_once: bool
    ) -> ApplyResult | None:
        """After a failed attempt: interrupted before Twilio took it, out of attempts, or None."""
        if self.stop_requested and not sent_once:
            return ApplyResult(
                Outcome.NOT_ATTEMPTED,
                "interrupted",
                "interrupted before Twilio took it",
                attempts=attempts,
            )
        if attempts < self.retry.attempts:
            return None
        api = last if isinstance(last, ApiError) else None
        return ApplyResult(
            Outcome.FAILED,
            _code_why(api) if api is not None else "transport",
            f"gave up after {attempts} attempts: {_describe(last)}",
            code=api.code if api is not None else None,
            attempts=attempts,
        )

    async def _apply_interaction(self, item: PlanItem) -> ApplyResult:
        """Close a Flex Conversations task the supported way: through the Interactions API.

        Twilio: "Do not use Task API directly to cancel or delete a task" of a conversation. The
        Interactions API has no If-Match, so the task is read again right before the write and
        the write is skipped when it changed; an unknown outcome is settled by reading the task.
        """
        task, refs = item.task, item.task.refs
        assert refs is not None
        assert refs.interaction_sid is not None
        assert refs.channel_sid is not None
        kd, uo = refs.interaction_sid, refs.channel_sid
        participant = item.participant_sid
        if item.decision.action is Action.CLOSE_PARTICIPANT:
            assert participant is not None

        async def write() -> None:
            if participant is not None and item.decision.action is Action.CLOSE_PARTICIPANT:
                await self._gw.close_participant(kd, uo, participant)
            else:
                await self._gw.close_channel(kd, uo)

        attempts = 0
        sent_once = False
        while True:
            settled, _ = await self._reread(item, "completed", sent_once=False, attempts=attempts)
            if settled is not None:
                if sent_once and settled.why.startswith("now-") and settled.status_after in _CLOSED:
                    return _confirmed(task, settled.status_after, attempts)
                return settled
            attempts += 1
            try:
                await write()
            except ApiError as error:
                verdict = (
                    _skip("interaction-not-open", error.message, attempts)
                    if error.code == 80906
                    else _write_refused(error, attempts)
                )
                if verdict is not None:
                    if sent_once and verdict.outcome is Outcome.SKIPPED:
                        after = await self._status_after(task.sid)  # our earlier try, landed?
                        if after in _CLOSED:
                            return _confirmed(task, after, attempts)
                    return verdict
                sent_once = sent_once or error.status != 429
                last: StuckTasksError = error
            except TransportError as error:
                sent_once = sent_once or error.sent
                last = error
            else:
                after = await self._status_after(task.sid)
                return ApplyResult(
                    Outcome.CLOSED,
                    "closed",
                    f"{task.status} -> {after or '?'} via the Interactions API",
                    status_after=after,
                    attempts=attempts,
                )
            given_up = self._given_up(last, attempts, sent_once=sent_once)
            if given_up is not None:
                if sent_once and given_up.outcome is Outcome.FAILED:
                    after = await self._status_after(task.sid)  # the last try may have landed
                    if after in _CLOSED:
                        return _confirmed(task, after, attempts)
                return given_up
            await backoff(self.retry, self.metrics, attempts, last)

    async def _fresh(self, sid: str) -> tuple[TaskRecord, str | None]:
        """Read a task again while settling a write: retried, and not cut short by Ctrl-C."""
        return await retrying(
            lambda: self._gw.fetch_task(self.scope.workspace_sid, sid),
            policy=self.retry,
            metrics=self.metrics,
        )

    async def _status_after(self, sid: str) -> str | None:
        try:
            fresh, _ = await self._fresh(sid)
        except StuckTasksError:
            return None
        return fresh.status

    async def _reread(
        self, item: PlanItem, target: str, *, sent_once: bool, attempts: int
    ) -> tuple[ApplyResult | None, str | None]:
        """Read the task again before (re)writing. Returns a settled result, or the fresh ETag."""
        task = item.task
        try:
            fresh, reason = await self._fresh(task.sid)
        except NotFound:
            return _skip("gone-404", "the task no longer exists (404)", attempts), None
        except StuckTasksError as error:
            return (
                ApplyResult(Outcome.FAILED, "recheck-failed", _describe(error), attempts=attempts),
                None,
            )
        if sent_once and fresh.status == target and reason == self.policy.reason:
            return (
                _confirmed(task, target, attempts),
                None,
            )
        if fresh.status != task.status:
            return (
                _skip(f"now-{fresh.status}", f"task is now {fresh.status}", attempts, fresh.status),
                None,
            )
        if fresh.refs != task.refs or fresh.attributes_problem != task.attributes_problem:
            return _skip("attributes-changed", "the task's evidence changed", attempts), None
        if self.verify_calls and not sent_once:
            self._lookups.clear()  # a saved plan re-checks the evidence itself, not a memory of it
            evidence = await self._evidence(fresh)
            again = decide(fresh, evidence, now=self.policy.now(), rules=self.policy.rules)
            if again.action is not item.decision.action:
                return _skip("no-longer-stuck", again.detail, attempts), None
        return None, fresh.etag or ""


_CLOSED = frozenset({"completed", "canceled", "wrapping"})


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def agent_of(
    task_sid: str, participants: list[tuple[str, str, dict[str, Any]]]
) -> ParticipantFacts | None:
    """The one agent participant whose routing properties name this task, else None.

    Closing a participant completes its task, so the tool closes only a participant that is
    provably this task's agent; anything ambiguous is left for a person.
    """
    mine = [
        sid
        for sid, kind, routing in participants
        if kind == "agent" and task_sid in {str(v) for v in routing.values()}
    ]
    return ParticipantFacts(mine[0]) if len(mine) == 1 else None


def _confirmed(task: TaskRecord, status: str | None, attempts: int) -> ApplyResult:
    """A write whose answer was lost, seen to have landed when the task was read again."""
    return ApplyResult(
        Outcome.CLOSED,
        "closed",
        f"{task.status} -> {status} (confirmed by re-read)",
        status_after=status,
        attempts=attempts,
    )


def _skip(why: str, detail: str, attempts: int, status_after: str | None = None) -> ApplyResult:
    return ApplyResult(Outcome.SKIPPED, why, detail, status_after=status_after, attempts=attempts)


def _write_refused(error: ApiError, attempts: int) -> ApplyResult | None:
    """Answers that mean the platform got there first: skipped, not failed."""
    if error.status == 412 or error.code == 20412:
        return _skip("changed-412", "the task changed since it was read (412)", attempts)
    if error.code == 20001:
        return _skip("refused-20001", f"Twilio refused the transition: {error.message}", attempts)
    if isinstance(error, NotFound):
        return _skip("gone-404", "the task no longer exists (404)", attempts)
    if not error.retryable:
        return ApplyResult(
            Outcome.FAILED, _code_why(error), _describe(error), code=error.code, attempts=attempts
        )
    return None


def _code_why(error: ApiError) -> str:
    return f"error-{error.code if error.code is not None else error.status}"


def _describe(error: Exception) -> str:
    if isinstance(error, ApiError):
        return f"HTTP {error.status}, error {error.code}: {error.message}"
    return str(error) or type(error).__name__
