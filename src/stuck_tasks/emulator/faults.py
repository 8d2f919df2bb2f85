"""Fault knobs of the emulator: latency, rate limits, errors, dropped connections, broken answers,
revoked credentials, Twilio's clock, platform events."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from .limits import Limits, check_limits, coerce_limits

PLATFORM_EVENT_KINDS: tuple[str, ...] = ("wrap", "platform_close", "accept", "new_task", "call_end")
# Accepted in platform_event_kinds but never on by default (so seeded fault runs stay the same).
OPT_IN_PLATFORM_EVENT_KINDS: tuple[str, ...] = ("channel_close", "conference_end")

_RATES = (
    "spike_rate",
    "error_rate",
    "drop_before_write_rate",
    "drop_after_write_rate",
    "error_after_write_rate",
    "html_rate",
    "platform_event_rate",
    "html_after_write_rate",
    "garbled_after_write_rate",
)
CLOSED_CHANNEL_CLOSE_MODES: tuple[str, ...] = ("refuse", "accept")


@dataclass(frozen=True)
class Faults:
    """All knobs are off by default; any combination may be set. Deterministic given ``seed``."""

    latency: float = 0.0
    latency_jitter: float = 0.0
    spike_rate: float = 0.0
    spike_latency: float = 1.0
    concurrency_limit: int | None = None
    rps_limit: float | None = None
    retry_after: float | None = None
    error_rate: float = 0.0
    drop_before_write_rate: float = 0.0
    drop_after_write_rate: float = 0.0
    error_after_write_rate: float = 0.0
    # A POST is applied, then answered 200 with a proxy's HTML page instead of Twilio's JSON.
    html_after_write_rate: float = 0.0
    # A POST is applied, then answered 200 with its JSON body cut off mid-document.
    garbled_after_write_rate: float = 0.0
    html_rate: float = 0.0
    max_page_size: int | None = None
    closed_task_ttl: float = 300.0
    # Seconds added to the real UTC clock to get Twilio's: every timestamp and Date header.
    # Negative: the caller's clock runs ahead of Twilio's.
    clock_offset: float = 0.0
    # Task list pages carry each task's attributes (the spec's list examples) instead of null.
    list_attributes: bool = False
    # "accept": closing a closed channel whose tasks are still open closes them (with Routing).
    closed_channel_close: str = "refuse"
    # After this many Twilio-route requests (from when these faults were set), every request
    # answers 401/20003: the credentials were revoked.
    revoke_after: int | None = None
    # For this many seconds after these faults were set, every Twilio-route request with good
    # credentials answers 429/20429 and is not processed: a throttling storm during an incident.
    throttle_seconds: float = 0.0
    platform_event_rate: float = 0.0
    platform_event_kinds: tuple[str, ...] = PLATFORM_EVENT_KINDS
    seed: int = 0
    # TaskRouter's per-workspace, per-endpoint limits (limits.py): (resource key, requests per
    # second) pairs, e.g. (("Task-Update", 25.0),); empty = unlimited. Admin JSON: an object.
    taskrouter_limits: Limits = ()
    taskrouter_window: float = 10.0

    def __post_init__(self) -> None:
        check_limits(self.taskrouter_limits, self.taskrouter_window)
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in (
            "latency",
            "latency_jitter",
            "spike_latency",
            "closed_task_ttl",
            "throttle_seconds",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.concurrency_limit is not None and self.concurrency_limit < 1:
            raise ValueError("concurrency_limit must be at least 1")
        if self.rps_limit is not None and self.rps_limit <= 0:
            raise ValueError("rps_limit must be positive")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must not be negative")
        if self.max_page_size is not None and self.max_page_size < 1:
            raise ValueError("max_page_size must be at least 1")
        if not math.isfinite(self.clock_offset):
            raise ValueError("clock_offset must be a finite number of seconds")
        if self.closed_channel_close not in CLOSED_CHANNEL_CLOSE_MODES:
            raise ValueError(
                f"closed_channel_close must be one of {list(CLOSED_CHANNEL_CLOSE_MODES)}, "
                f"got {self.closed_channel_close!r}"
            )
        if self.revoke_after is not None and self.revoke_after < 0:
            raise ValueError("revoke_after must not be negative")
        known = {*PLATFORM_EVENT_KINDS, *OPT_IN_PLATFORM_EVENT_KINDS}
        unknown = set(self.platform_event_kinds) - known
        if unknown:
            raise ValueError(f"unknown platform event kinds: {sorted(unknown)}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> Faults:
        """Build from JSON-like data (admin endpoint); unknown keys are an error."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(fields)
        if unknown:
            raise ValueError(f"unknown fault knobs: {sorted(unknown)}")
        kwargs: dict[str, object] = {}
        for name, value in data.items():
            kwargs[name] = _coerce(name, value)
        return cls(**kwargs)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out["platform_event_kinds"] = list(self.platform_event_kinds)
        out["taskrouter_limits"] = dict(self.taskrouter_limits)
        return out


def _coerce(name: str, value: object) -> object:
    if name == "taskrouter_limits":
        return coerce_limits(value)
    if name == "platform_event_kinds":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError("platform_event_kinds must be a list of strings")
        return tuple(value)
    if name == "list_attributes":
        if not isinstance(value, bool):
            raise ValueError("list_attributes must be true or false")
        return value
    if name == "closed_channel_close":
        if not isinstance(value, str):
            raise ValueError("closed_channel_close must be a string")
        return value
    if name in ("concurrency_limit", "max_page_size", "seed", "revoke_after"):
        if value is None and name != "seed":
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
        return value
    if value is None and name in ("rps_limit", "retry_after"):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    return float(value)
