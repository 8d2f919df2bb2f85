"""Where a World's SIDs come from: fresh uuid4s, or a seeded stream that repeats run after run."""

from __future__ import annotations

import random
import threading
import uuid


class SidSource:
    """Mints ``prefix`` + 32 lower-case hex digits, the shape of every Twilio SID.

    ``SidSource()`` uses uuid4, so SIDs differ on every run. ``SidSource(seed)`` draws them from
    a ``random.Random`` seeded by ``seed``: two worlds built by the same calls in the same order
    get the same SIDs (an operator can save a plan against the sandbox and apply it against
    the next one). Only SIDs come from here; secrets never do.
    """

    def __init__(self, seed: int | None = None) -> None:
        if isinstance(seed, bool) or not (seed is None or isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed
        # A string seed is hashed by SHA-512 (random.seed version 2): stable across runs and
        # Python versions, and a stream of its own, unlike any seed's Faults or seeding RNG.
        self._rng = None if seed is None else random.Random(f"stuck-tasks-sids-{seed}")
        self._lock = threading.Lock()

    def __call__(self, prefix: str) -> str:
        if self._rng is None:
            return prefix + uuid.uuid4().hex
        with self._lock:
            return f"{prefix}{self._rng.getrandbits(128):032x}"

    def __repr__(self) -> str:
        return f"SidSource({self.seed!r})"
