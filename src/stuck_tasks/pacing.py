"""Keep each TaskRouter endpoint under the budget Twilio reports.

TaskRouter limits each endpoint per workspace, "averaged over 10 seconds", and its answers carry
``X-Rate-Limit-Limit`` (requests per second), ``X-Rate-Limit-Remaining`` (requests left) and
``X-Rate-Limit-Config`` (TWILIO_FACTS §0, §4.4). Their exact semantics are unpublished, so they
are read defensively: a value that does not parse is ignored, and the model below corrects
itself with every answer.

The model, per endpoint: a budget of ``rate × window`` requests in any window. Our own admitted
requests are remembered (when their answer arrived); ``Remaining`` on an answer tells how much
of the budget others (the Flex UI, Studio, Functions share it) used at that moment. A request may
go while ``budget − others − ours in the window − ours in flight`` leaves room; otherwise it
waits for our oldest admitted request to leave the window. Requests also go no faster than
``Limit`` per second, with bursts of a second's worth at most (``BURST_SECONDS``): how Twilio
averages is unpublished, so a run does not lean on a burst allowance it may not have, the Flex
UI never meets a whole window's budget spent by us in one second, and answers keep coming, each
correcting the estimate of what others used. Without ``Limit`` the last
``Remaining`` minus what is in flight is the room, and an empty room waits a little before it
probes again. 429s are the limiter's business (``ratecontrol.AdaptiveLimiter``).
"""

from __future__ import annotations

import re
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from multidict import CIMultiDict, CIMultiDictProxy

DEFAULT_WINDOW = 10.0  # "averaged over 10 seconds" (TaskRouter REST API reference)
# Our own requests are counted from their answer (after Twilio counted them), so the model is
# never late to count ours; what others spend shows in the next answer's Remaining.
MARGIN = 0
_PROBE = 0.25  # seconds between probes when only Remaining is known and it is 0
# Whatever Limit says, requests may go at least this often (per second): a nonsense but
# parseable Limit such as 0.001 must not hold a request for 1,000 s.
_SLOWEST = 0.1
# Requests of one endpoint go no faster than its reported rate, with bursts of at most this many
# seconds' worth (a token bucket). Sending a whole window's budget at once, then nothing until it
# slid, measured 250 updates in one or two seconds every 10 s (2,000 updates at 25/s over 10 s):
# the Flex UI met that budget spent for the rest of each window, and a stale estimate of others'
# use once held the last 3 updates for 8 s, as no answer came to correct it. Paced, a unit of
# budget that leaves the window is free for others until our next request reaches Twilio.
# Against a strict sliding window the price is about one window, once: 2,000 updates at 25/s
# over 10 s end after about 79 s instead of 70.
BURST_SECONDS = 1.0
_WINDOW_IN_CONFIG = re.compile(r"window\D{0,3}(\d+(?:\.\d+)?)", re.IGNORECASE)


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header's value, whatever the case of its name."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None or isinstance(headers, CIMultiDictProxy | CIMultiDict):
        return value  # aiohttp's answer headers: ``get`` already ignores case
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def _number(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if value >= 0 and value == value and value != float("inf") else None


def budget_spent(headers: Mapping[str, str] | None) -> bool:
    """Whether an answer says its endpoint's budget is spent (``X-Rate-Limit-Remaining`` below
    one). TaskRouter reports the budget on every answer, so a 429 of the account's own limits
    on a TaskRouter route carries the header too, with room left: that 429 is not the budget's.
    A value that does not parse says nothing is spent (the limiter then backs off: stricter)."""
    return _spent(_number(header(headers, "X-Rate-Limit-Remaining")))


def _spent(remaining: float | None) -> bool:
    return remaining is not None and remaining < 1


@dataclass
class _Budget:
    rate: float | None = None  # requests per second, from X-Rate-Limit-Limit
    window: float = DEFAULT_WINDOW
    remaining: float | None = None  # from the newest answer
    others: float = 0.0  # budget used by others at the newest answer
    # When our requests' answers arrived: the admitted ones, and the refused ones (``answered``).
    ours: deque[float] = field(default_factory=deque)
    last_probe: float = 0.0
    refused: int = 0  # budget 429s since our last admitted request
    tokens: float | None = None  # sends allowed now by the pace (None until the rate is known)
    refilled_at: float = 0.0

    @property
    def pace(self) -> float:
        """Sends per second: the reported rate, never slower than ``_SLOWEST``."""
        return max(self.rate or 0.0, _SLOWEST)

    @property
    def burst(self) -> float:
        return max(1.0, self.pace * BURST_SECONDS)

    def pace_wait(self, now: float) -> float:
        """Seconds until the pace allows one more send (0: now); refills the bucket."""
        if self.tokens is None:
            return 0.0
        self.tokens = min(self.burst, self.tokens + (now - self.refilled_at) * self.pace)
        self.refilled_at = now
        if self.tokens >= 1.0 - 1e-9:  # (a refill to exactly 1 can come out a hair short)
            return 0.0
        return max(0.001, (1.0 - self.tokens) / self.pace)

    def probe_every(self, base: float) -> float:
        """Seconds between probes while the budget is spent: ``base`` after the first refusal,
        doubling with each further one, at most a window. Whether Twilio counts a refused
        request in its average is unpublished; if it does, probes at the rate would keep the
        window full of our own refusals (and the Flex UI out) until --deadline, while sparser
        ones let it drain. If it does not, the price is at most a window's wait, once."""
        return min(self.window, base * 2.0 ** min(max(self.refused - 1, 0), 16))

    def ours_within(self, now: float) -> int:
        while self.ours and self.ours[0] <= now - self.window:
            self.ours.popleft()
        return len(self.ours)


class Pacer:
    """Per-endpoint pacing from TaskRouter's rate-limit headers (no headers: no pacing)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._budgets: dict[str, _Budget] = {}
        # Kept for every kind, so the requests sent before the first answer revealed a budget
        # are counted too.
        self._in_flight: Counter[str] = Counter()

    def delay(self, kind: str) -> float:
        """Seconds to wait before sending a request of ``kind`` (0: send now)."""
        budget = self._budgets.get(kind)
        if budget is None or budget.remaining is None:
            return 0.0
        now = self._clock()
        in_flight = self._in_flight[kind]
        if budget.rate is None:
            if budget.remaining - in_flight >= 1 + MARGIN:
                return 0.0
            if in_flight:
                return _PROBE  # an answer on its way will tell more
            wait = budget.last_probe + budget.probe_every(_PROBE) - now
            return max(0.0, wait)
        pace = budget.pace_wait(now)
        room = budget.rate * budget.window - budget.others - budget.ours_within(now) - in_flight
        if room >= 1 + MARGIN:
            return pace
        if budget.ours:
            # When our oldest request leaves the window; after refusals, sparser still (the
            # window may hold more than Remaining's 0 says, if refusals are counted).
            backoff = (
                budget.last_probe + budget.probe_every(1.0 / budget.pace) if budget.refused else 0
            )
            return max(pace, 0.001, budget.ours[0] + budget.window - now, backoff - now)
        # The room is taken by others and none of ours is in the window, so no answer is on its
        # way to say when it frees: probe at the pace, sparser while probes are refused (0 once
        # the probe is due; a floor above 0 here would hold the request until --deadline).
        return max(pace, budget.last_probe + budget.probe_every(1.0 / budget.pace) - now, 0.0)

    def sending(self, kind: str) -> None:
        self._in_flight[kind] += 1
        budget = self._budgets.get(kind)
        if budget is not None:
            budget.last_probe = now = self._clock()
            if budget.tokens is not None:
                budget.pace_wait(now)
                budget.tokens -= 1.0

    def answered(self, kind: str, *, status: int | None, headers: Mapping[str, str] | None) -> None:
        """Learn from one answer (``status`` None: no answer came)."""
        if self._in_flight[kind] > 0:
            self._in_flight[kind] -= 1
        budget = self._budgets.get(kind)
        remaining = _number(header(headers, "X-Rate-Limit-Remaining"))
        if budget is None:
            if remaining is None:
                return
            budget = self._budgets[kind] = _Budget(last_probe=self._clock())
        now = self._clock()
        if status is not None and status != 429:
            budget.ours.append(now)
            budget.refused = 0
        if remaining is None:
            return
        if status == 429 and _spent(remaining):
            # Whether Twilio counts a refused request in its average is unpublished: ours is
            # taken to hold a unit of the window too (else, if it does, the next request would
            # go when our oldest admitted one leaves, into a window our refusals still fill).
            budget.refused += 1
            budget.ours.append(now)
        rate = _number(header(headers, "X-Rate-Limit-Limit"))
        if rate:
            if budget.rate is not None:
                budget.pace_wait(now)  # tokens earned at the old rate, up to now
            budget.rate = rate
        config = header(headers, "X-Rate-Limit-Config") or ""
        found = _WINDOW_IN_CONFIG.search(config)
        if found:
            window = float(found.group(1))
            if 0 < window <= 3600:
                budget.window = window
        budget.remaining = remaining
        if budget.rate is not None and budget.tokens is None:
            # The rate is known from now: a full bucket, less what we already sent.
            sent = budget.ours_within(now) + self._in_flight[kind]
            budget.tokens = max(0.0, budget.burst - sent)
            budget.refilled_at = now
        if budget.rate is not None:
            used = budget.rate * budget.window - remaining
            budget.others = max(0.0, used - budget.ours_within(now))
