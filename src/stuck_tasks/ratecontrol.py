"""Shared control of every request of a run: metrics, the stop signal, limiter, retries.

- ``Metrics``: counters for the summary, progress and ``--json``; only its own methods change it.
- ``Stop``: why the run is stopping (an interrupt, a fatal error); every stage reads it before
  it starts new work, and waits end early when it is set.
- ``AdaptiveLimiter``: caps requests in flight (AIMD on 429s) and paces each endpoint by the
  budget Twilio reports (``pacing.py``).
- ``RetryPolicy`` and ``Reads``: the one retry entry point for reads. A 429 was never processed
  by Twilio, so it is retried until the deadline; other transient errors have an attempt limit.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import math
import random
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import ApiError, DeadlineExceeded, Stopped, StuckTasksError, TransportError
from .pacing import Pacer, budget_spent, header

T = TypeVar("T")
# The try number of the request being sent, set by whoever retries it (for --verbose).
ATTEMPT: contextvars.ContextVar[int] = contextvars.ContextVar("attempt", default=1)
# Set while a request settles a write already sent: it goes on while the run stops.
SETTLING: contextvars.ContextVar[bool] = contextvars.ContextVar("settling", default=False)


class Metrics:
    """Counters for the summary and ``--json``: requests by kind, retries, 429s, back-off."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.throttled = 0
        self.server_errors = 0
        self.transport_errors = 0
        self.retries = 0
        self.backoff_seconds = 0.0
        self.paced_seconds = 0.0
        self.peak_in_flight = 0
        self.accepted = 0  # answers that were not 401/403: what Twilio took before refusing

    def sent(self, kind: str) -> None:
        self.requests[kind] += 1

    def answered(self, status: int) -> None:
        if status not in (401, 403):
            self.accepted += 1
        if status == 429:
            self.throttled += 1
        elif status >= 500:
            self.server_errors += 1

    def no_answer(self) -> None:
        self.transport_errors += 1

    def backed_off(self, seconds: float) -> None:
        self.retries += 1
        self.backoff_seconds += seconds

    def paced(self, seconds: float) -> None:
        self.paced_seconds += seconds

    def in_flight(self, count: int) -> None:
        self.peak_in_flight = max(self.peak_in_flight, count)

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "requests_total": self.total,
            "retries": self.retries,
            "throttled_429": self.throttled,
            "server_errors_5xx": self.server_errors,
            "transport_errors": self.transport_errors,
            "backoff_seconds": round(self.backoff_seconds, 3),
            "paced_seconds": round(self.paced_seconds, 3),
            "peak_in_flight": self.peak_in_flight,
        }


class StopReason(enum.Enum):
    INTERRUPTED = "interrupted"
    FATAL = "fatal"


class Stop:
    """Set once, read by every stage: no new work starts after it."""

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self.error: StuckTasksError | None = None
        self.aborted = False
        self._events: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def interrupt(self) -> None:
        """A signal: stop new work, let in-flight work settle."""
        if self.reason is None:
            self.reason = StopReason.INTERRUPTED
        self._wake()

    def fail(self, error: StuckTasksError) -> None:
        """A fatal error: the first one is the run's story; later ones add nothing."""
        if self.error is None:
            self.error = error
        if self.reason is None:
            self.reason = StopReason.FATAL
        self._wake()

    def abort(self) -> None:
        """A second signal: stop at once, even what is in flight."""
        self.aborted = True
        self.interrupt()

    def _wake(self) -> None:
        for event in self._events.values():
            event.set()

    def _event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        event = self._events.get(loop)
        if event is None:
            # Each phase of a run has its own event loop; an Event belongs to one.
            self._events = {loop: asyncio.Event()}
            event = self._events[loop]
            if self.requested:
                event.set()
        return event

    async def wait(self) -> None:
        await self._event().wait()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake as soon as a stop is requested."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        event = self._event()
        if event.is_set():
            return
        try:
            await asyncio.wait_for(event.wait(), timeout=seconds)
        except TimeoutError:
            return


@dataclass(frozen=True, slots=True)
class Ticket:
    """Handed out by ``acquire``; tells ``release`` when and what was sent."""

    sent_at: float
    kind: str


SLOW_START = 16  # requests in flight a run begins with (see AdaptiveLimiter's start)
# After a concurrency 429, seconds spent at the regained limit before probing above it again.
HOLD_AFTER_429 = 5.0
_RTT_SAMPLES = 8  # recent answers whose fastest tells slow start that requests queue


class AdaptiveLimiter:
    """An AIMD concurrency limiter, shared by all workers of a run, with per-endpoint pacing.

    With ``start``, it begins with that many requests in flight and grows like TCP's slow
    start: one more for each success that arrives while every slot is taken or a request waits
    for one (so about double per round trip), until the ceiling or the first 429 of the
    account's limits, then AIMD.
    A run asked for more concurrency than the account allows then meets that limit with a few
    429s instead of a burst of them, and opens fewer connections it cannot use.
    """

    def __init__(
        self,
        ceiling: int,
        *,
        metrics: Metrics,
        pacer: Pacer | None = None,
        floor: int = 1,
        decrease: float = 0.7,
        clock: Callable[[], float] = time.monotonic,
        start: int | None = None,
    ) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.limit = float(ceiling if start is None else max(self.floor, min(start, ceiling)))
        self._slow_start = self.limit < ceiling
        self._min_rtt = math.inf  # the fastest answer yet (seconds from admission)
        self._recent_rtts: deque[float] = deque(maxlen=_RTT_SAMPLES)
        self._wanting = 0  # requests waiting to be admitted (for a turn, a pause or a slot)
        self._regain = 0.0  # after a concurrency 429: grow by one per success up to here
        self._hold_until = -math.inf  # ... then hold there until this time before probing
        self.in_flight = 0
        self.pacer = pacer or Pacer(clock=clock)
        self._decrease = decrease
        self._clock = clock
        self._metrics = metrics
        self._paused_until = 0.0
        self._last_cut = -math.inf
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._turns: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._turns_loop: asyncio.AbstractEventLoop | None = None
        # A per-second limit (not a concurrency one) shows as 429s whatever the concurrency.
        # Twilio-Concurrent-Requests tells them apart: a 429 reporting no more concurrent
        # requests than a successful answer once did was not about concurrency. Then (once a
        # second of answers has been seen) the send rate is capped a little under the rate
        # that was being admitted, never cut by more than 30% at once, and grows back by 10% a
        # second (multiplicative: it recovers as fast at 1,000 requests a second as at 40).
        self.rate_cap: float | None = None
        self._next_send = 0.0
        self._admitted: deque[float] = deque()  # when recent non-429 answers arrived
        self._started = clock()
        self._concurrent_ok = 0  # the most Twilio-Concurrent-Requests a success reported

    async def acquire(self, kind: str = "") -> Ticket:
        loop = asyncio.get_running_loop()
        if self._turns_loop is not loop:  # each phase runs in its own loop; a lock binds to one
            self._turns, self._turns_loop = defaultdict(asyncio.Lock), loop
        self._wanting += 1
        try:
            if not await self._slot(kind):
                # A pause is pending: requests of one kind queue for their turn, so one of them
                # at a time waits it out. Else every waiter would wake when a pause ends, one
                # would go, and the rest would sleep again (at a rate cap of 40/s and 64
                # waiters, 2,500 wake-ups a second).
                async with self._turns[kind]:
                    while not await self._slot(kind):
                        pause = self._pause(kind)
                        if pause > 0:
                            self._metrics.paced(pause)
                            await asyncio.sleep(pause)
        finally:
            self._wanting -= 1
        self.pacer.sending(kind)
        self._metrics.in_flight(self.in_flight)
        now = self._clock()
        if self.rate_cap is not None:
            self._next_send = max(now, self._next_send) + 1.0 / self.rate_cap
        return Ticket(now, kind)

    def _pause(self, kind: str) -> float:
        now = self._clock()
        return max(self._paused_until - now, self.pacer.delay(kind), self._next_send - now)

    async def _slot(self, kind: str) -> bool:
        """Take a slot, waiting in line (first come, first served) when all are taken: True
        with the slot taken, False without it when a pause is due first.

        The check for a pause and the caller's ``pacer.sending`` run with no await between
        them, so the pacer sees every send before it judges the next one. A released slot is
        handed to the waiter it wakes (counted in ``in_flight`` at once), so a request that
        arrives in between cannot take it, and no slot stays empty while its waiter wakes up.
        """
        if self._pause(kind) > 0:
            return False
        if self.in_flight < int(self.limit):
            self._wake()  # a free slot goes to those already waiting first
            if self.in_flight < int(self.limit):
                self.in_flight += 1
                return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self._give_back()  # we were handed a slot, then cancelled: pass it on
            raise
        if self._pause(kind) > 0:  # a pause came up while we waited: not now
            self._give_back()
            return False
        return True

    def _give_back(self) -> None:
        self.in_flight -= 1
        self._wake()

    def release(
        self,
        ticket: Ticket,
        *,
        status: int | None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        """A request ended: ``status`` None when no answer came."""
        binding = self.in_flight >= int(self.limit) or self._wanting > 0  # demand at the limit
        refused_at = self.in_flight  # in flight when this answer came (itself included)
        self.in_flight -= 1
        self.pacer.answered(ticket.kind, status=status, headers=headers)
        if status == 429:
            # A 429 whose answer says the TaskRouter endpoint's budget is spent is the pacer's;
            # any other is the account's limits (concurrency, per second), whose 429s on a
            # TaskRouter route still carry that endpoint's budget, with room left.
            if not budget_spent(headers):
                concurrent = _count(header(headers, "Twilio-Concurrent-Requests"))
                per_second = concurrent is not None and concurrent <= self._concurrent_ok
                self._throttled(
                    ticket, retry_after, per_second=per_second, at=refused_at, counted=concurrent
                )
        else:
            now = self._clock()
            if status is not None:
                self._admitted.append(now)
                if self._slow_start:
                    self._sample_rtt(now - ticket.sent_at)
                concurrent = _count(header(headers, "Twilio-Concurrent-Requests"))
                if concurrent is not None:
                    self._concurrent_ok = max(self._concurrent_ok, concurrent)
            if self._slow_start or self.limit < self._regain:
                if binding and not (self._slow_start and self._queueing()):
                    self.limit = min(float(self.ceiling), self.limit + 1.0)
                    self._slow_start = self._slow_start and self.limit < self.ceiling
            elif self.limit < self.ceiling and now >= self._hold_until:
                self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
            if self.rate_cap is not None:
                self.rate_cap *= 1.0 + 0.1 / max(self.rate_cap, 1.0)
        self._wake()

    def _sample_rtt(self, rtt: float) -> None:
        self._min_rtt = min(self._min_rtt, rtt)
        self._recent_rtts.append(rtt)

    def _queueing(self) -> bool:
        """Whether even the fastest recent answers took clearly longer than the fastest ever
        (HyStart's delay test, as in Linux's CUBIC): requests are queueing, here or at Twilio,
        and more in flight would only wait longer. Slow start holds its limit while they do and
        grows again when they stop (a list page that held up the answers for a moment). A run
        that cannot keep up with its answers would otherwise count its own backlog as room to
        grow: at ``--concurrency 200`` against a limit of 100, 195 in flight and as many
        connections, where 130 did as well."""
        if len(self._recent_rtts) < _RTT_SAMPLES:
            return False
        allowance = min(max(self._min_rtt / 8, 0.004), 0.016)
        return min(self._recent_rtts) > self._min_rtt + allowance

    def admitted_rate(self, now: float) -> float | None:
        """Non-429 answers per second over the last second; None before a second has passed."""
        while self._admitted and self._admitted[0] < now - 1.0:
            self._admitted.popleft()
        if now - self._started < 1.0:
            return None
        return float(len(self._admitted))

    def _throttled(
        self,
        ticket: Ticket,
        retry_after: float | None,
        *,
        per_second: bool,
        at: int,
        counted: int | None,
    ) -> None:
        now = self._clock()
        self._slow_start = False
        # Requests sent before the last cut were sent at the old rate: one cut per round trip.
        if ticket.sent_at >= self._last_cut:
            if not per_second:
                # The account's concurrency limit said no at ``at`` in flight: after the cut,
                # grow back quickly to one under that, hold there a while, then probe above it
                # slowly (the idea of TCP CUBIC, simply: most of the time just under the limit
                # that refused), instead of spending 30 round trips at 70-100 %. Probing at
                # once cost a cut every few seconds: measured at --concurrency 200 against
                # a limit of 100, the limit swung between 71 and 102 and averaged about 96.
                self._regain = max(float(self.floor), self._refused_at(at, counted) - 1.0)
                self._hold_until = now + HOLD_AFTER_429
            self.limit = max(float(self.floor), self.limit * self._decrease)
            self._last_cut = now
            admitted = self.admitted_rate(now) if per_second else None
            if admitted is not None:
                cut = 0.9 * admitted
                if self.rate_cap is not None:
                    cut = max(cut, self.rate_cap * self._decrease)
                self.rate_cap = max(1.0, cut)
        if retry_after:
            self._paused_until = max(self._paused_until, now + retry_after)

    def _refused_at(self, at: int, counted: int | None) -> float:
        """How many in flight the account refused: ours when the 429 came, or fewer if the
        429 says so. Some of our slots are not at Twilio (an answer read late, a request not
        yet written), so after slow start overshot, ours can be 119 where Twilio counted 101,
        and regaining to 118 would meet a 429 at once, again and again. ``counted`` is the
        429's Twilio-Concurrent-Requests (what the account's limiter compared); its exact
        meaning is not published, so it may lower the figure by a fifth at most."""
        ours = min(self.limit, float(at))
        if counted is None:
            return ours
        return min(ours, max(float(counted), 0.8 * ours))

    def _wake(self) -> None:
        """Hand each free slot to the longest waiter (it is counted in flight from now)."""
        while self.in_flight < int(self.limit) and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self.in_flight += 1


def _count(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with full jitter, bounded attempts, one overall deadline.

    ``attempts`` bounds tries that failed for a reason other than 429: a 429 was never processed
    by Twilio (error 20429), so it is always safe to try again while the deadline allows.
    """

    attempts: int = 6
    base: float = 0.25
    cap: float = 10.0
    deadline: float | None = None  # absolute time.monotonic() value
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` counts from 1)."""
        ceiling = min(self.cap, self.base * 2 ** (min(attempt, 30) - 1))
        return max(self.rng.uniform(ceiling / 2, ceiling), retry_after or 0.0)

    def check_deadline(self, wait: float = 0.0) -> None:
        if self.deadline is not None and time.monotonic() + wait > self.deadline:
            raise DeadlineExceeded("the run's --deadline passed before the work settled")

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


def is_transient(error: Exception) -> bool:
    """Errors worth trying again for an idempotent request."""
    if isinstance(error, ApiError):
        return error.retryable
    return isinstance(error, TransportError)


@dataclass
class Tries:
    """Counts the tries of one request: 429s apart from every other failure."""

    failures: int = 0
    throttled: int = 0

    def count(self, error: Exception, policy: RetryPolicy) -> bool:
        """Count a failed try; True while another try is allowed."""
        if isinstance(error, ApiError) and error.status == 429:
            self.throttled += 1
            return True
        self.failures += 1
        return self.failures < policy.attempts

    def delay(self, error: Exception, policy: RetryPolicy) -> float:
        retry_after = error.retry_after if isinstance(error, ApiError) else None
        return policy.delay(max(self.failures, self.throttled, 1), retry_after)


@dataclass(frozen=True)
class Reads:
    """The one retry entry point for reads (idempotent requests)."""

    policy: RetryPolicy
    metrics: Metrics
    stop: Stop

    async def call(self, op: Callable[[], Awaitable[T]], *, settling: bool = False) -> T:
        """Run ``op``, retrying transient failures. ``settling``: a read that settles a write
        already sent goes on while the run stops (the record must say what happened)."""
        tries = Tries()
        while True:
            self.policy.check_deadline()
            if self.stop.requested and not settling:
                raise Stopped("the run is stopping")
            token = ATTEMPT.set(tries.failures + tries.throttled + 1)
            mode = SETTLING.set(settling)
            try:
                return await op()
            except (ApiError, TransportError) as error:
                if not is_transient(error) or not tries.count(error, self.policy):
                    raise
                if self.stop.requested and not settling:
                    raise
                await self.backoff(tries.delay(error, self.policy), interruptible=not settling)
            finally:
                ATTEMPT.reset(token)
                SETTLING.reset(mode)

    async def backoff(self, wait: float, *, interruptible: bool) -> None:
        """Sleep before a retry, counting it; raises DeadlineExceeded when out of time.

        ``interruptible``: a stop ends the wait early (a settling read keeps its pace)."""
        self.policy.check_deadline(wait)
        self.metrics.backed_off(wait)
        if interruptible:
            await self.stop.sleep(wait)
        else:
            await asyncio.sleep(wait)
