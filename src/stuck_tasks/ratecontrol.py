"""Shared rate control for every request of a run: one adaptive limiter, one retry policy.

The limiter caps the number of requests in flight. On a 429 it cuts the cap (multiplicative
decrease, at most once per round trip) and honours ``Retry-After`` for the whole run; every
success raises it again by about one request per round trip (additive increase), up to the
``--concurrency`` ceiling. This is TCP's AIMD, applied to Twilio's per-account concurrency limit,
which is unpublished and shared with live Flex traffic (TWILIO_FACTS §4.3).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from .errors import ApiError, DeadlineExceeded, TransportError

T = TypeVar("T")


@dataclass
class Metrics:
    """Counters for the summary and ``--json``: requests by kind, retries, 429s, back-off."""

    requests: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    retries: int = 0
    backoff_seconds: float = 0.0
    peak_in_flight: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": dict(sorted(self.requests.items())),
            "requests_total": sum(self.requests.values()),
            "retries": self.retries,
            "throttled_429": self.throttled,
            "server_errors_5xx": self.server_errors,
            "transport_errors": self.transport_errors,
            "backoff_seconds": round(self.backoff_seconds, 3),
            "peak_in_flight": self.peak_in_flight,
        }


@dataclass(frozen=True, slots=True)
class Ticket:
    """Handed out by ``acquire``; tells ``release`` when the request was sent."""

    sent_at: float


class AdaptiveLimiter:
    """An AIMD concurrency limiter shared by all workers of a run."""

    def __init__(
        self,
        ceiling: int,
        *,
        metrics: Metrics,
        floor: int = 1,
        decrease: float = 0.7,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self.limit = float(ceiling)
        self.in_flight = 0
        self._decrease = decrease
        self._clock = clock
        self._metrics = metrics
        self._paused_until = 0.0
        self._last_cut = -math.inf
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> Ticket:
        while True:
            pause = self._paused_until - self._clock()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            if self.in_flight < int(self.limit):
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake()  # we were woken, then cancelled: pass the slot on
                raise
        self.in_flight += 1
        self._metrics.peak_in_flight = max(self._metrics.peak_in_flight, self.in_flight)
        return Ticket(self._clock())

    def release(self, ticket: Ticket, *, throttled: bool, retry_after: float | None) -> None:
        self.in_flight -= 1
        if throttled:
            self._throttled(ticket, retry_after)
        elif self.limit < self.ceiling:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        self._wake()

    def _throttled(self, ticket: Ticket, retry_after: float | None) -> None:
        now = self._clock()
        # Requests sent before the last cut were sent at the old rate: one cut per round trip.
        if ticket.sent_at >= self._last_cut:
            self.limit = max(float(self.floor), self.limit * self._decrease)
            self._last_cut = now
        if retry_after:
            self._paused_until = max(self._paused_until, now + retry_after)

    def _wake(self) -> None:
        free = int(self.limit) - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with full jitter, bounded attempts, one overall deadline."""

    attempts: int = 6
    base: float = 0.25
    cap: float = 10.0
    deadline: float | None = None  # absolute time.monotonic() value
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try number ``attempt + 1`` (``attempt`` counts from 1)."""
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return max(self.rng.uniform(ceiling / 2, ceiling), retry_after or 0.0)

    def check_deadline(self, wait: float = 0.0) -> None:
        if self.deadline is not None and time.monotonic() + wait > self.deadline:
            raise DeadlineExceeded("the run's --deadline passed before the work settled")


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Parse a ``Retry-After`` header given in seconds (Twilio does not document it)."""
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def is_transient(error: Exception) -> bool:
    """Errors worth trying again for an idempotent request."""
    if isinstance(error, ApiError):
        return error.retryable
    return isinstance(error, TransportError)


async def backoff(policy: RetryPolicy, metrics: Metrics, attempt: int, error: Exception) -> None:
    """Sleep before the next try, counting it; raises DeadlineExceeded when out of time."""
    wait = policy.delay(attempt, getattr(error, "retry_after", None))
    policy.check_deadline(wait)
    metrics.retries += 1
    metrics.backoff_seconds += wait
    await asyncio.sleep(wait)


async def retrying(
    op: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    metrics: Metrics,
    should_stop: Callable[[], bool] = lambda: False,
) -> T:
    """Run an idempotent request, retrying transient failures under the policy."""
    attempt = 1
    while True:
        policy.check_deadline()
        try:
            return await op()
        except (ApiError, TransportError) as error:
            if not is_transient(error) or attempt >= policy.attempts or should_stop():
                raise
            await backoff(policy, metrics, attempt, error)
            attempt += 1
