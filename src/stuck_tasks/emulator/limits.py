"""TaskRouter's per-workspace, per-endpoint rate limits: a sliding window over admitted requests.

Twilio's TaskRouter limits are per workspace and per endpoint, "averaged over 10 seconds"
(TaskRouter REST API reference). The Event Streams event ``com.twilio.apiusage.taskrouter.ratelimits``
names one limit by ``namespace`` (the WS… SID) and ``resource_key`` (e.g.
``TaskQueueStatistics-List``) and gives ``rate_limit`` in requests per second
(https://www.twilio.com/docs/events/event-types/taskrouter/ratelimit). Answers carry
``X-Rate-Limit-Limit``, ``X-Rate-Limit-Remaining`` and ``X-Rate-Limit-Config`` (support article
"Monitoring TaskRouter API Usage"); their exact format is unpublished.

Averaging over the window is modelled as its strictest reading: at most ``floor(rate × window)``
requests of one (workspace, resource key) are admitted in any ``window``-second interval, with no
extra burst. A request past that budget is answered 429 and, like Twilio's 429s, is not
processed. Whether Twilio counts a refused request in its average is unpublished, so it is
counted (the stricter reading): a client that keeps asking at the rate keeps the window full,
for itself and for everyone else who shares the budget.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# Route name (server.py) → Twilio-style resource key.
ROUTE_RESOURCE_KEYS: Mapping[str, str] = {
    "list_workspaces": "Workspace-List",
    "fetch_workspace": "Workspace-Fetch",
    "list_task_queues": "TaskQueue-List",
    "list_workflows": "Workflow-List",
    "list_tasks": "Task-List",
    "fetch_task": "Task-Fetch",
    "update_task": "Task-Update",
}
RESOURCE_KEYS: tuple[str, ...] = tuple(ROUTE_RESOURCE_KEYS.values())
# Workspace-List has no workspace in its path: it is counted per account.
ACCOUNT_NAMESPACE = "account"

Limits = tuple[tuple[str, float], ...]


def budget(rate: float, window: float) -> int:
    """Requests admitted in any ``window`` seconds: ``floor(rate × window)``, e.g. 25/s × 10 s = 250."""
    return math.floor(rate * window + 1e-9)  # 0.3 × 10 is 3.0000000000000004, 0.7 × 10 is 7.000…1


def check_limits(limits: Limits, window: float) -> None:
    """Raise ValueError unless every limit names a known key once and admits at least 1 request."""
    if isinstance(window, bool) or not math.isfinite(window) or window <= 0:
        raise ValueError(f"taskrouter_window must be a positive number of seconds, got {window!r}")
    seen: set[str] = set()
    for pair in limits:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(
                f"taskrouter_limits must hold (resource key, rate) pairs, got {pair!r}"
            )
        key, rate = pair
        if key not in RESOURCE_KEYS:
            raise ValueError(
                f"unknown TaskRouter resource key {key!r}; known: {', '.join(RESOURCE_KEYS)}"
            )
        if key in seen:
            raise ValueError(f"TaskRouter resource key {key!r} is limited twice")
        seen.add(key)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise ValueError(f"{key}: the rate must be a number of requests per second")
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"{key}: the rate must be positive, got {rate!r}")
        if budget(rate, window) < 1:
            raise ValueError(
                f"{key}: {format_number(rate)} requests/s over {format_number(window)} s admits "
                "no request; rate × window must be at least 1"
            )


def coerce_limits(value: object) -> Limits:
    """``{"Task-Update": 25, ...}`` (admin JSON) → ``(("Task-Update", 25.0), ...)``."""
    if not isinstance(value, Mapping):
        raise ValueError('taskrouter_limits must be an object such as {"Task-Update": 25}')
    out: list[tuple[str, float]] = []
    for key, rate in value.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise ValueError(f"{key}: the rate must be a number of requests per second")
        out.append((str(key), float(rate)))
    return tuple(out)


def format_number(value: float) -> str:
    """A plain number as the headers show it: ``25``, ``0.5``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True)
class Limit:
    """The limit one request falls under."""

    account_sid: str
    namespace: str  # the WS… SID from the path, or ACCOUNT_NAMESPACE
    key: str
    rate: float
    window: float

    @property
    def budget(self) -> int:
        return budget(self.rate, self.window)

    def headers(self, remaining: int) -> dict[str, str]:
        return {
            # Like the rate-limit event's ``rate_limit``: requests per second.
            "X-Rate-Limit-Limit": format_number(self.rate),
            "X-Rate-Limit-Remaining": str(remaining),
            # Twilio's format for this header is unpublished; this one names the key and window.
            "X-Rate-Limit-Config": f"{self.key};window={format_number(self.window)}",
        }


def limit_for(
    route: str, account_sid: str, workspace_sid: str | None, limits: Limits, window: float
) -> Limit | None:
    """The limit of a request to ``route``, or None when its resource key is unlimited."""
    key = ROUTE_RESOURCE_KEYS.get(route)
    if key is None:
        return None
    rate = dict(limits).get(key)
    if rate is None:
        return None
    return Limit(account_sid, workspace_sid or ACCOUNT_NAMESPACE, key, rate, window)


class SlidingWindows:
    """The admitted requests of each (account, namespace, key) during the last window.

    ``clock`` is monotonic seconds; tests pass a fake one. A request admitted at ``t`` ages out
    at ``t + window``: the budget covers every half-open interval ``(now - window, now]``.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._admitted: dict[tuple[str, str, str], deque[float]] = {}

    def _live(self, limit: Limit, now: float) -> deque[float]:
        stamps = self._admitted.setdefault((limit.account_sid, limit.namespace, limit.key), deque())
        while stamps and stamps[0] <= now - limit.window:
            stamps.popleft()
        return stamps

    def admit(self, limit: Limit) -> int | None:
        """Count the request and return the requests still admissible after it, or None (429):
        a refused request is counted too (see above)."""
        now = self._clock()
        stamps = self._live(limit, now)
        refused = len(stamps) >= limit.budget
        stamps.append(now)
        return None if refused else limit.budget - len(stamps)

    def remaining(self, limit: Limit) -> int:
        """Requests admissible now, counting nothing."""
        return max(0, limit.budget - len(self._live(limit, self._clock())))
