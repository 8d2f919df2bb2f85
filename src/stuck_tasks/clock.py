"""Twilio's clock, read from the ``Date`` header of its answers.

The grace period and the wrap-up age compare Twilio's timestamps with "now". A laptop whose
clock runs five minutes fast would close tasks five minutes early, so "now" is Twilio's time:
every answer carries a ``Date`` header (whole seconds), and the answer was made before it
arrived, so ``Date - arrival`` is a lower bound of Twilio's offset from the local clock. The
largest such bound seen is kept; ``now()`` is the local clock plus it, which is never later
than Twilio's own clock (so a wait is never cut short). Until a first answer is seen the local
clock is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

# An offset beyond this is not a clock difference but a broken header: ignore it.
_IMPLAUSIBLE = timedelta(days=2)


class TwilioClock:
    """``now()`` on Twilio's clock, as far as its answers tell."""

    def __init__(self, local: Callable[[], float] = time.time) -> None:
        self._local = local
        self._offset: float | None = None
        # The last Date header and its instant: Twilio's answers repeat it within a second,
        # and parsing one costs more than the rest of this method.
        self._last: tuple[str, float | None] = ("", None)

    def observe(self, date_header: str | None, *, received_at: float | None = None) -> None:
        """Learn from one answer's ``Date`` header (ignored when missing or nonsense)."""
        if not date_header:
            return
        if date_header == self._last[0]:
            instant = self._last[1]
        else:
            instant = _instant(date_header)
            self._last = (date_header, instant)
        if instant is None:
            return
        arrival = self._local() if received_at is None else received_at
        offset = instant - arrival
        if abs(offset) > _IMPLAUSIBLE.total_seconds():
            return
        if self._offset is None or offset > self._offset:
            self._offset = offset

    @property
    def offset(self) -> float | None:
        """Seconds Twilio's clock is at least ahead of ours (negative: behind); None: unknown."""
        return self._offset

    def now(self) -> datetime:
        seconds = self._local() + (self._offset or 0.0)
        return datetime.fromtimestamp(seconds, UTC)


def _instant(date_header: str) -> float | None:
    """The POSIX time a ``Date`` header names; None when it is nonsense or has no zone."""
    try:
        stamp = parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return None
    return None if stamp.tzinfo is None else stamp.timestamp()
