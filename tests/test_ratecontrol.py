"""The limiter, the pacer, the retry policy and Twilio's clock, on fake clocks (milliseconds)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stuck_tasks.clock import TwilioClock
from stuck_tasks.errors import ApiError, DeadlineExceeded, Stopped, TransportError
from stuck_tasks.pacing import BURST_SECONDS, Pacer
from stuck_tasks.ratecontrol import (
    HOLD_AFTER_429,
    AdaptiveLimiter,
    Metrics,
    Reads,
    RetryPolicy,
    Stop,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ the limiter


def test_one_cut_per_round_trip():
    clock = FakeClock()
    limiter = AdaptiveLimiter(100, metrics=Metrics(), clock=clock)

    async def go():
        tickets = [await limiter.acquire() for _ in range(10)]  # sent together
        clock.now += 0.1
        for ticket in tickets:  # all answered 429
            limiter.release(ticket, status=429)
        return limiter.limit

    assert asyncio.run(go()) == pytest.approx(70.0)  # cut once, not ten times


def test_a_429_sent_after_the_cut_cuts_again():
    clock = FakeClock()
    limiter = AdaptiveLimiter(100, metrics=Metrics(), clock=clock)

    async def go():
        first = await limiter.acquire()
        clock.now += 0.1
        limiter.release(first, status=429)
        clock.now += 0.1
        second = await limiter.acquire()
        clock.now += 0.1
        limiter.release(second, status=429)
        return limiter.limit

    assert asyncio.run(go()) == pytest.approx(49.0)


def test_successes_recover_by_about_one_request_per_round_trip():
    limiter = AdaptiveLimiter(10, metrics=Metrics())
    limiter.limit = 5.0

    async def go():
        tickets = [await limiter.acquire() for _ in range(5)]
        for ticket in tickets:
            limiter.release(ticket, status=200)
        return limiter.limit

    assert 5.9 < asyncio.run(go()) < 6.1


def test_retry_after_pauses_every_request():
    limiter = AdaptiveLimiter(10, metrics=Metrics())

    async def go():
        ticket = await limiter.acquire()
        limiter.release(ticket, status=429, retry_after=0.2)
        started = time.monotonic()
        await limiter.acquire()
        return time.monotonic() - started

    assert asyncio.run(go()) >= 0.19


def test_a_cancelled_waiter_passes_its_slot_on():
    limiter = AdaptiveLimiter(1, metrics=Metrics())

    async def go():
        held = await limiter.acquire()
        first = asyncio.ensure_future(limiter.acquire())
        second = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        limiter.release(held, status=200)  # wakes ``first`` ...
        first.cancel()  # ... which is cancelled before it runs: the slot must go to ``second``
        return await asyncio.wait_for(second, timeout=1)

    assert asyncio.run(go()) is not None


def test_the_limit_never_goes_below_one():
    clock = FakeClock()
    limiter = AdaptiveLimiter(4, metrics=Metrics(), clock=clock)

    async def go():
        for _ in range(20):
            ticket = await limiter.acquire()
            clock.now += 1
            limiter.release(ticket, status=429)
        return limiter.limit

    assert asyncio.run(go()) == 1.0


# ------------------------------------------------------------------ TaskRouter's budget headers


def headers(remaining: int, limit: float = 25, window: int = 10) -> dict[str, str]:
    return {
        "X-Rate-Limit-Limit": str(limit),
        "X-Rate-Limit-Remaining": str(remaining),
        "X-Rate-Limit-Config": f"Task-Update;window={window}",
    }


def test_no_headers_no_pacing():
    pacer = Pacer(clock=FakeClock())
    pacer.answered("update_task", status=200, headers={})
    assert pacer.delay("update_task") == 0.0


def test_a_spent_budget_waits_for_our_oldest_request_to_leave_the_window():
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    for left in range(249, -1, -1):  # our own 250 requests spend the whole budget at t=1000
        pacer.sending("update_task")
        pacer.answered("update_task", status=200, headers=headers(left))
    assert pacer.delay("update_task") == pytest.approx(10.0)
    clock.now += 4
    assert pacer.delay("update_task") == pytest.approx(6.0)
    clock.now += 6.001
    assert pacer.delay("update_task") == 0.0


def test_budget_others_use_is_left_to_them():
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    # Our first answer says 100 remain of 250: someone else (the Flex UI) spent 149.
    pacer.sending("update_task")
    pacer.answered("update_task", status=200, headers=headers(100))
    for _ in range(100):
        clock.now += 1 / 25  # the pace: 25 a second
        assert pacer.delay("update_task") == 0.0
        pacer.sending("update_task")  # in flight, not answered yet
    clock.now += 1
    assert pacer.delay("update_task") > 0  # 149 theirs, 1 ours, 100 in flight: the budget


def test_requests_go_at_the_reported_rate_with_bursts_of_a_second_at_most():
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    pacer.sending("update_task")
    pacer.answered("update_task", status=200, headers=headers(249))  # 25/s over 10 s: 250
    burst = 1  # the first request, sent before the rate was known
    while pacer.delay("update_task") == 0.0:
        pacer.sending("update_task")
        burst += 1
    assert burst == 25 * BURST_SECONDS  # a second's worth at once, not the window's 250
    assert pacer.delay("update_task") == pytest.approx(1 / 25)  # then one every 40 ms
    sent = 0
    for _ in range(100):  # 4 s more, in 40 ms steps: 25 a second
        clock.now += 0.04
        if pacer.delay("update_task") == 0.0:
            pacer.sending("update_task")
            sent += 1
    assert 99 <= sent <= 100


def test_a_nonsense_limit_cannot_hold_a_request_longer_than_a_probe():
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    pacer.sending("update_task")
    pacer.answered("update_task", status=200, headers=headers(0, limit=0.001))
    assert 0 < pacer.delay("update_task") <= 10.0  # not 1 ÷ 0.001 = 1,000 s
    clock.now += 10.0
    assert pacer.delay("update_task") == 0.0  # then a probe goes, once every 10 s at least


def test_a_probe_goes_when_others_hold_the_whole_budget_and_none_of_ours_is_in_the_window():
    # Our request was refused and Remaining says others used all 250:
    # no answer is on its way to tell when the budget frees, so only a probe can find out.
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    pacer.sending("update_task")
    pacer.answered("update_task", status=429, headers=headers(0))
    waited = 0.0
    while (wait := pacer.delay("update_task")) > 0:
        assert waited < 1.0, "no probe within a second at 25/s"
        clock.now += wait
        waited += wait
    pacer.sending("update_task")  # the probe
    assert pacer.delay("update_task") == pytest.approx(1 / 25)  # the next one at the pace


def test_a_refused_request_holds_a_unit_of_the_window_like_an_admitted_one():
    # If Twilio counts refused requests in its average, ours fills the window until it leaves
    # it: the next request waits for that, not for our oldest admitted one.
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    pacer.sending("update_task")
    pacer.answered("update_task", status=429, headers=headers(0))
    assert pacer.delay("update_task") == pytest.approx(10.0)


def test_refused_probes_go_sparser_up_to_a_window_without_a_reported_rate():
    # Only Remaining is known (no Limit): probes every 0.25 s while it is 0 would fill a small
    # budget with refusals if they are counted; each refusal doubles the wait, up to a window.
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    spent = {"X-Rate-Limit-Remaining": "0"}
    waits = []
    for _ in range(8):
        pacer.sending("update_task")
        pacer.answered("update_task", status=429, headers=spent)
        waits.append(round(pacer.delay("update_task"), 6))
        clock.now += waits[-1]
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    pacer.sending("update_task")
    pacer.answered("update_task", status=200, headers={"X-Rate-Limit-Remaining": "5"})
    assert pacer.delay("update_task") == 0.0


def _drive(
    pacer: Pacer,
    clock: FakeClock,
    *,
    rate: float,
    window: float,
    others: list[float],
    seconds: float,
    count_refused: bool = False,
) -> tuple[list[float], int]:
    """A Twilio endpoint that admits ``rate × window`` requests in any ``window`` s, answering
    at once, with others' requests at the given times; returns when ours were sent, and how many
    of them were answered 429. ``count_refused``: our refused requests count in the window too
    (the emulator's reading: Twilio does not say)."""
    budget = int(rate * window)
    admitted: deque[float] = deque()  # every admitted request (ours and theirs) in the window
    sent: list[float] = []
    refused = 0
    theirs = deque(sorted(others))
    end = clock.now + seconds
    while clock.now < end:
        while admitted and admitted[0] <= clock.now - window:
            admitted.popleft()
        while theirs and theirs[0] <= clock.now:
            theirs.popleft()
            if len(admitted) < budget:
                admitted.append(clock.now)
        wait = pacer.delay("update_task")
        if wait > 0:
            clock.now += min(wait, 0.05)
            continue
        pacer.sending("update_task")
        sent.append(clock.now)
        status = 200
        if len(admitted) >= budget:
            status = 429
            refused += 1
        if status == 200 or count_refused:
            admitted.append(clock.now)
        hdrs = headers(max(0, budget - len(admitted)), limit=rate, window=int(window))
        pacer.answered("update_task", status=status, headers=hdrs)
    return sent, refused


@settings(max_examples=30, deadline=None)
@given(
    rate=st.sampled_from([1.0, 5.0, 25.0, 50.0]),
    others=st.lists(st.floats(min_value=0.0, max_value=20.0), max_size=60),
)
# Others spent the whole budget before our first request: it is refused, none of ours is in
# the window, and only a probe can learn when the budget frees.
@example(rate=1.0, others=[0.0] * 10)
@example(rate=25.0, others=[0.0] * 250)
def test_paced_sends_never_outrun_the_reported_rate_and_meet_429s_only_from_others(rate, others):
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    window = 10.0
    started = clock.now
    sent, refused = _drive(
        pacer, clock, rate=rate, window=window, others=[started + t for t in others], seconds=30
    )
    # In any T seconds at most burst + rate × T (the same as: a token bucket never runs dry).
    burst = max(1.0, rate * BURST_SECONDS)
    tokens, last = burst, started
    for at in sent:
        tokens = min(burst, tokens + (at - last) * rate)
        last = at
        assert tokens >= 1 - 1e-6
        tokens -= 1
    # A 429 only for budget others spent that our last answer had not shown, or for a probe
    # while they hold all of it; a refused request of ours is taken to hold the window until it
    # leaves it, so probes add at most the one request that found the budget spent.
    assert refused <= len(others) + 1
    if not others:  # alone on the endpoint: about all the rate allows (the window never binds)
        assert len(sent) >= rate * (30 - 2)
    _never_stuck(sent, started=started, others=others, rate=rate, window=window, burst=burst)


def _never_stuck(
    sent: list[float], *, started: float, others: list[float], rate: float, window: float,
    burst: float,
) -> None:  # fmt: skip
    """Once others' last request has left the window, ours go at about the rate: the refused
    request we hold in the window leaves it within one more window, then the pace, the
    window's budget permitting."""
    free_from = started + max(others, default=0.0) + 2 * window + 1 / rate
    after = sum(1 for at in sent if at >= free_from)
    assert after >= rate * (started + 30 - free_from) - burst - 2, (after, free_from - started)


# The same examples in every run (CI included), each checked when this was written: under the
# counting reading, the bound on 429s is a measurement (at most 9 per request of others seen),
# not a proof; before our refused requests held the window, runs reached 13 (283 429s for 21
# requests of others at 50/s), each probe going into a window its refusals still filled.
@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    rate=st.sampled_from([1.0, 5.0, 25.0, 50.0]),
    others=st.lists(st.floats(min_value=0.0, max_value=20.0), max_size=60),
)
@example(rate=1.0, others=[0.0] * 10)
@example(rate=25.0, others=[0.0] * 250)
# 135 429s before our refused requests held the window; 12 now.
@example(rate=50.0, others=[9.67, 5.19, 12.21, 14.32, 5.18, 12.2, 4.88, 13.22, 17.04, 17.37, 8.05])
def test_if_twilio_counts_refused_requests_the_pacer_still_drains_the_window(rate, others):
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    window, started = 10.0, clock.now
    sent, refused = _drive(
        pacer, clock, rate=rate, window=window, others=[started + t for t in others],
        seconds=30, count_refused=True,
    )  # fmt: skip
    assert refused <= 10 * (len(others) + 1)
    burst = max(1.0, rate * BURST_SECONDS)
    _never_stuck(sent, started=started, others=others, rate=rate, window=window, burst=burst)


def test_each_endpoint_has_its_own_budget():
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    pacer.answered("update_task", status=200, headers=headers(0))
    assert pacer.delay("update_task") > 0
    assert pacer.delay("fetch_task") == 0.0


@pytest.mark.parametrize(
    "garbage",
    [
        {"X-Rate-Limit-Remaining": "lots"},
        {"X-Rate-Limit-Remaining": "-3"},
        {"X-Rate-Limit-Remaining": "nan"},
        {"X-Rate-Limit-Limit": "inf", "X-Rate-Limit-Remaining": "oops"},
        {"X-Rate-Limit-Config": "window=banana"},
    ],
)
def test_headers_that_do_not_parse_are_ignored(garbage):
    pacer = Pacer(clock=FakeClock())
    pacer.answered("fetch_task", status=200, headers=garbage)
    assert pacer.delay("fetch_task") == 0.0


def test_remaining_without_a_limit_probes_slowly_when_empty():
    clock = FakeClock()
    pacer = Pacer(clock=clock)
    pacer.sending("fetch_task")
    pacer.answered("fetch_task", status=200, headers={"X-Rate-Limit-Remaining": "0"})
    assert 0 < pacer.delay("fetch_task") <= 0.25


# ------------------------------------------------------------------ the retry policy


def reads(attempts: int = 3, deadline: float = 10.0, stop: Stop | None = None) -> Reads:
    policy = RetryPolicy(
        attempts=attempts, base=0.001, cap=0.002, deadline=time.monotonic() + deadline
    )
    return Reads(policy, Metrics(), stop or Stop())


def flaky(*answers):
    queue = list(answers)

    async def op():
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return op


def test_a_read_gives_up_after_its_attempts():
    op = flaky(*([ApiError(503, 20503, "down")] * 5))
    with pytest.raises(ApiError):
        asyncio.run(reads(attempts=3).call(op))


def test_429s_do_not_count_against_the_attempts():
    op = flaky(*([ApiError(429, 20429, "Too Many Requests")] * 8), "ok")
    assert asyncio.run(reads(attempts=3).call(op)) == "ok"


def test_a_4xx_is_not_retried():
    calls = []

    async def op():
        calls.append(1)
        raise ApiError(400, 20001, "bad")

    with pytest.raises(ApiError):
        asyncio.run(reads().call(op))
    assert len(calls) == 1


def test_the_deadline_ends_retries():
    op = flaky(*([TransportError("down", sent=False)] * 1000))
    r = Reads(
        RetryPolicy(attempts=1000, base=0.05, cap=0.05, deadline=time.monotonic() + 0.2),
        Metrics(),
        Stop(),
    )
    with pytest.raises(DeadlineExceeded):
        asyncio.run(r.call(op))


def test_a_stop_ends_retries_of_ordinary_reads_but_not_of_settling_ones():
    stop = Stop()
    stop.interrupt()
    with pytest.raises(Stopped):  # not even tried: the run is stopping
        asyncio.run(reads(stop=stop).call(flaky(TransportError("x", sent=False), "ok")))
    assert (
        asyncio.run(
            reads(stop=stop).call(flaky(TransportError("x", sent=False), "ok"), settling=True)
        )
        == "ok"
    )


def test_retry_delays_are_jittered_exponential_and_capped():
    policy = RetryPolicy(base=0.25, cap=10.0)
    assert 0.125 <= policy.delay(1) <= 0.25
    assert 2.0 <= policy.delay(5) <= 4.0
    assert 5.0 <= policy.delay(40) <= 10.0
    assert policy.delay(1, retry_after=3.0) == 3.0


# ------------------------------------------------------------------ Twilio's clock


def test_twilio_clock_is_a_lower_bound_from_date_headers():
    local = FakeClock()
    local.now = 1_800_000_000.0  # our clock
    clock = TwilioClock(local)
    # Twilio's clock is five minutes behind ours: its Date says so.
    clock.observe("Fri, 15 Jan 2027 07:55:00 GMT", received_at=1_800_000_000.0)
    assert clock.offset == pytest.approx(-300.0)
    assert clock.now().timestamp() == pytest.approx(1_800_000_000.0 - 300.0)
    # A later answer that shows less lag raises the bound; one that shows more does not lower it.
    clock.observe("Fri, 15 Jan 2027 07:55:05 GMT", received_at=1_800_000_004.0)
    assert clock.offset == pytest.approx(-299.0)
    clock.observe("Fri, 15 Jan 2027 07:50:00 GMT", received_at=1_800_000_004.0)
    assert clock.offset == pytest.approx(-299.0)


@pytest.mark.parametrize(
    "bad", [None, "", "yesterday", "Mon, 32 Foo 2026 99:00:00 GMT", "Fri, 15 Jan 1990 07:55:00 GMT"]
)
def test_a_missing_or_absurd_date_header_is_ignored(bad):
    clock = TwilioClock(FakeClock())
    clock.observe(bad)
    assert clock.offset is None


# ------------------------------------------------------------------ per-second limits


def concurrent(n: int) -> dict[str, str]:
    return {"Twilio-Concurrent-Requests": str(n)}


async def answered(
    limiter: AdaptiveLimiter, clock: FakeClock, n: int, headers: dict[str, str]
) -> None:
    for _ in range(n):
        ticket = await limiter.acquire()
        clock.now += 0.01
        limiter.release(ticket, status=200, headers=headers)


def test_a_429_at_known_concurrency_caps_the_send_rate():
    clock = FakeClock()
    limiter = AdaptiveLimiter(64, metrics=Metrics(), clock=clock)

    async def go():
        await answered(limiter, clock, 100, concurrent(10))  # 100 a second at 10 concurrent
        clock.now += 0.005
        ticket = await limiter.acquire()
        limiter.release(ticket, status=429, headers=concurrent(4))  # fewer than ever succeeded
        return limiter.rate_cap

    assert asyncio.run(go()) == pytest.approx(0.9 * 100, rel=0.02)


def test_a_429_at_new_concurrency_cuts_only_the_concurrency():
    clock = FakeClock()
    limiter = AdaptiveLimiter(64, metrics=Metrics(), clock=clock)

    async def go():
        await answered(limiter, clock, 100, concurrent(10))
        ticket = await limiter.acquire()
        limiter.release(ticket, status=429, headers=concurrent(11))  # past the highest success
        return limiter.rate_cap, limiter.limit

    cap, limit = asyncio.run(go())
    assert cap is None
    assert limit == pytest.approx(64 * 0.7)


def test_a_taskrouter_budget_429_is_left_to_the_pacer():
    clock = FakeClock()
    limiter = AdaptiveLimiter(64, metrics=Metrics(), clock=clock)

    async def go():
        ticket = await limiter.acquire("update_task")
        limiter.release(
            ticket, status=429, headers={"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Limit": "25"}
        )
        return limiter.limit, limiter.rate_cap

    assert asyncio.run(go()) == (64.0, None)


@pytest.mark.parametrize("remaining", ["180", "1", "oops"])
def test_a_429_on_a_taskrouter_route_with_budget_left_is_the_accounts(remaining: str):
    # TaskRouter reports its budget on every answer, so a 429 of the account's concurrency
    # limit on a TaskRouter route carries Remaining too, with room left (or a value that does
    # not parse): it was not about the endpoint's budget, and the limiter cuts.
    clock = FakeClock()
    limiter = AdaptiveLimiter(64, metrics=Metrics(), clock=clock)

    async def go():
        ticket = await limiter.acquire("fetch_task")
        limiter.release(
            ticket,
            status=429,
            headers={"X-Rate-Limit-Remaining": remaining, "X-Rate-Limit-Limit": "50"},
        )
        return limiter.limit

    assert asyncio.run(go()) == pytest.approx(64 * 0.7)


def test_the_rate_cap_recovers_by_about_ten_percent_a_second():
    clock = FakeClock()
    limiter = AdaptiveLimiter(64, metrics=Metrics(), clock=clock)
    limiter.rate_cap = 100.0

    async def go():
        for _ in range(100):  # one second of answers at the cap
            clock.now += 0.01
            ticket = await limiter.acquire()
            limiter.release(ticket, status=200)
        return limiter.rate_cap

    assert 109 < asyncio.run(go()) < 111


class CountingMetrics(Metrics):
    """Metrics that also count the pauses waited (one per sleep)."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses = 0

    def paced(self, seconds: float) -> None:
        self.pauses += 1
        super().paced(seconds)


def test_waiters_under_a_rate_cap_take_turns_instead_of_all_waking_at_each_send():
    metrics = CountingMetrics()
    limiter = AdaptiveLimiter(64, metrics=metrics)
    limiter.rate_cap = 400.0  # one send every 2.5 ms
    waiters = 40

    async def one() -> None:
        limiter.release(await limiter.acquire("fetch_task"), status=200)

    async def go() -> None:
        await asyncio.gather(*(one() for _ in range(waiters)))

    asyncio.run(go())
    # Each send waits out its own pause once (twice at worst); a herd that all wakes at every
    # send sleeps about waiters² / 2 = 800 times.
    assert metrics.pauses <= 2 * waiters, metrics.pauses


def test_a_released_slot_goes_to_the_longest_waiter_at_once_not_to_a_newcomer():
    """No slot stays empty while its waiter wakes up, and nobody jumps the queue."""
    limiter = AdaptiveLimiter(2, metrics=Metrics())
    order: list[str] = []

    async def wants(name: str, kind: str) -> None:
        ticket = await limiter.acquire(kind)
        order.append(name)
        await asyncio.sleep(3600)
        limiter.release(ticket, status=200)  # pragma: no cover - cancelled first

    async def go() -> None:
        held = [await limiter.acquire("fetch_task") for _ in range(2)]
        queued = [
            asyncio.ensure_future(wants(name, kind))
            for name, kind in (("a", "fetch_task"), ("b", "fetch_call"), ("c", "fetch_task"))
        ]
        await asyncio.sleep(0)
        assert limiter.in_flight == 2
        assert order == []
        for ticket in held:  # two answers in one turn of the loop
            limiter.release(ticket, status=200)
        assert limiter.in_flight == 2  # both slots handed over before anyone woke
        newcomer = asyncio.ensure_future(wants("d", "fetch_task"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert order == ["a", "b"]  # one hop; c and the newcomer still wait
        for waiting_task in (*queued, newcomer):
            waiting_task.cancel()
        await asyncio.gather(*queued, newcomer, return_exceptions=True)

    asyncio.run(go())


def test_a_waiter_cancelled_after_being_handed_a_slot_passes_it_on():
    limiter = AdaptiveLimiter(1, metrics=Metrics())

    async def go() -> None:
        held = await limiter.acquire()
        first = asyncio.ensure_future(limiter.acquire())
        second = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        limiter.release(held, status=200)  # handed to ``first``...
        first.cancel()  # ...which is cancelled before it runs
        ticket = await asyncio.wait_for(second, timeout=1)
        assert first.cancelled()
        assert limiter.in_flight == 1
        limiter.release(ticket, status=200)
        assert limiter.in_flight == 0

    asyncio.run(go())


def test_a_slot_freed_without_a_wake_up_is_still_taken_by_a_newcomer():
    """However the limit came to have room while some wait (here: raised from outside), the
    waiters get it first and a newcomer takes what is left: nobody waits beside a free slot."""
    limiter = AdaptiveLimiter(3, metrics=Metrics())
    limiter.limit = 1.0

    async def go() -> None:
        held = await limiter.acquire()
        first = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        limiter.limit = 3.0  # room for two more, and nobody woken
        newcomer = await asyncio.wait_for(limiter.acquire(), timeout=1)
        await asyncio.wait_for(first, timeout=1)
        assert limiter.in_flight == 3
        for ticket in (held, first.result(), newcomer):
            limiter.release(ticket, status=200)
        assert limiter.in_flight == 0

    asyncio.run(go())


# ------------------------------------------------------------------ slow start


def test_slow_start_grows_to_the_ceiling_while_there_is_demand():
    """200 workers, each sending its next request as soon as its last is answered."""
    limiter = AdaptiveLimiter(100, metrics=Metrics(), start=16)
    seen: list[tuple[float, int]] = []  # (limit, in flight) every round trip or so

    async def worker():
        for _ in range(20):
            ticket = await limiter.acquire()
            await asyncio.sleep(0.01)  # the round trip
            limiter.release(ticket, status=200)

    async def watch():
        while True:
            await asyncio.sleep(0.01)
            seen.append((limiter.limit, limiter.in_flight))

    async def go():
        watcher = asyncio.ensure_future(watch())
        await asyncio.gather(*(worker() for _ in range(200)))
        watcher.cancel()

    asyncio.run(go())
    limits = [limit for limit, _ in seen]
    assert limits[0] < 100  # it did not begin at the ceiling
    assert limits == sorted(limits)  # only grew
    assert limiter.limit == 100.0  # up to the ceiling
    assert max(in_flight for _, in_flight in seen) <= 100  # never past it


async def waiting(limiter: AdaptiveLimiter, n: int) -> list[asyncio.Future[object]]:
    """``n`` requests waiting for a slot (demand), registered with the limiter."""
    waiters = [asyncio.ensure_future(limiter.acquire()) for _ in range(n)]
    await asyncio.sleep(0)
    return waiters


def test_slow_start_does_not_grow_while_the_slots_are_not_all_used():
    clock = FakeClock()
    limiter = AdaptiveLimiter(100, metrics=Metrics(), clock=clock, start=16)

    async def go():
        for _ in range(50):  # one request at a time, like the listing's pages
            ticket = await limiter.acquire()
            clock.now += 0.1
            limiter.release(ticket, status=200)
        return limiter.limit

    assert asyncio.run(go()) == 16.0


def rounds_of_slow_start(rtts: list[float]) -> list[float]:
    """Slow start with every slot taken and more waiting, one round trip of ``rtts`` after
    another (fake clock): the limit at the end of each round."""
    clock = FakeClock()
    limiter = AdaptiveLimiter(1000, metrics=Metrics(), clock=clock, start=16)
    limits = []

    async def go():
        queued = await waiting(limiter, 2000)  # demand: 16 admitted, the rest wait
        held: list[asyncio.Future[Any]] = []
        for rtt in [0.0, *rtts]:
            clock.now += rtt
            for done in held:
                limiter.release(done.result(), status=200)
            await asyncio.sleep(0)  # the freed slots' waiters take them
            held = [w for w in queued if w.done()]
            queued = [w for w in queued if not w.done()]
            limits.append(limiter.limit)
        del limits[0]  # the first 16, before any answer
        for waiter in queued:
            waiter.cancel()

    asyncio.run(go())
    return limits


def test_slow_start_doubles_while_answers_come_back_as_fast_as_ever():
    limits = rounds_of_slow_start([0.08] * 4)
    assert limits == [32.0, 64.0, 128.0, 256.0]


def test_slow_start_holds_while_even_the_fastest_answers_take_longer_then_grows_again():
    """Requests queue (a client that cannot keep up with its answers, a list page that held
    up the server): the round trip grows from 80 to 100 ms, and the limit stops doubling until
    the answers come back as fast as before."""
    limits = rounds_of_slow_start([0.08, 0.08, 0.1, 0.1, 0.1, 0.08, 0.08])
    assert limits[:2] == [32.0, 64.0]
    assert 64 < limits[2] <= 64 + 8  # held within the first slow round's first eight answers
    assert limits[3] == limits[4] == limits[2]  # and while the answers stay slow
    assert limits[6] > 2 * limits[4]  # doubling again once they are fast


def test_the_first_429_ends_slow_start():
    clock = FakeClock()
    limiter = AdaptiveLimiter(100, metrics=Metrics(), clock=clock, start=16)

    async def go():
        tickets = [await limiter.acquire() for _ in range(16)]  # every slot taken
        queued = await waiting(limiter, 50)
        clock.now += 0.1
        limiter.release(tickets.pop(), status=429)
        cut = limiter.limit
        for ticket in tickets:
            limiter.release(ticket, status=200)
        for waiter in queued:
            waiter.cancel()
        return cut, limiter.limit

    cut, after = asyncio.run(go())
    assert cut == pytest.approx(16 * 0.7)
    # Back to just under the 16 that met the 429, not on to 11.2 + 15 as in slow start.
    assert 0.9 * 16 <= after < 16.5


def test_after_a_concurrency_429_the_limit_regains_quickly_holds_then_probes_slowly():
    clock = FakeClock()
    limiter = AdaptiveLimiter(200, metrics=Metrics(), clock=clock)

    async def go():
        tickets = [await limiter.acquire() for _ in range(100)]
        clock.now += 0.1
        limiter.release(tickets.pop(), status=429)  # the account said no at 100 in flight
        cut = limiter.limit
        for ticket in tickets:
            limiter.release(ticket, status=200)
        return cut, limiter.limit

    cut, after = asyncio.run(go())
    assert cut == 200 * 0.7  # the cut is of the limit, which is still above the 99 to regain:
    assert after == cut  # it holds (no probing yet)

    limiter = AdaptiveLimiter(100, metrics=Metrics(), clock=clock)

    async def again():
        tickets = [await limiter.acquire() for _ in range(100)]
        queued = await waiting(limiter, 100)
        clock.now += 0.1
        limiter.release(tickets.pop(), status=429)  # 100 -> 70; regain up to 99
        for ticket in tickets[:50]:
            limiter.release(ticket, status=200)
        regained = limiter.limit
        clock.now += HOLD_AFTER_429 - 0.01
        for ticket in tickets[50:70]:
            limiter.release(ticket, status=200)
        held = limiter.limit
        clock.now += 0.02
        for ticket in tickets[70:]:
            limiter.release(ticket, status=200)
        for waiter in queued:
            waiter.cancel()
        return regained, held, limiter.limit

    regained, held, probed = asyncio.run(again())
    # 29 successes take it from 70 to 99 at once, one under the 100 that was refused; it stays
    # there for HOLD_AFTER_429 seconds; then each success adds about 1/99 again.
    assert regained == 99
    assert held == 99
    assert probed == pytest.approx(99 + 29 / 99, rel=0.001)


@pytest.mark.parametrize(
    ("counted", "regained"),
    [
        (None, 118),  # no header: one under our own 119
        (101, 100),  # Twilio counted 101 (some of our 119 were not at Twilio): one under that
        (5, 94),  # an implausible count lowers it by a fifth at most: 0.8 x 119, less one
    ],
)
def test_a_concurrency_429_regains_to_one_under_what_twilio_counted(
    counted: int | None, regained: int
):
    clock = FakeClock()
    limiter = AdaptiveLimiter(119, metrics=Metrics(), clock=clock)

    async def go():
        tickets = [await limiter.acquire() for _ in range(119)]  # slow start overshot
        queued = await waiting(limiter, 100)
        clock.now += 0.1
        headers = concurrent(counted) if counted is not None else {}
        limiter.release(tickets.pop(), status=429, headers=headers)  # 119 -> 83.3
        for ticket in tickets:
            limiter.release(ticket, status=200)
        for waiter in queued:
            waiter.cancel()
        return limiter.limit

    assert int(asyncio.run(go())) == regained


def test_without_start_the_limiter_begins_at_its_ceiling():
    assert AdaptiveLimiter(64, metrics=Metrics()).limit == 64.0
    assert AdaptiveLimiter(8, metrics=Metrics(), start=16).limit == 8.0
