"""Errors raised below the click layer.

Hierarchy::

    StuckTasksError              anything the CLI turns into one clear line
    ├── ConfigError              bad or missing configuration; exit 2
    │   └── GuardRefusal         a blast-radius guard refused the plan; exit 2
    ├── AuthError                401/403 from Twilio; exit 2
    ├── NotFound                 404 (task purged, call unknown, workspace unknown)
    ├── ApiError                 any other Twilio error answer (status, code)
    ├── TransportError           no usable answer: refused, timed out, dropped
    └── BadResponse              an answer that is not the JSON Twilio sends
"""

from __future__ import annotations


class StuckTasksError(Exception):
    """Base class: its message is one line a person can act on."""


class ConfigError(StuckTasksError):
    """The configuration cannot work (exit code 2)."""


class GuardRefusal(ConfigError):
    """A blast-radius guard refused to apply the plan (exit code 2)."""


class ApiError(StuckTasksError):
    """Twilio answered with an error body."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"HTTP {status}, Twilio error {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        """429 is never processed, 5xx is transient: both may be tried again."""
        return self.status == 429 or self.status >= 500


class AuthError(ApiError):
    """401/403: the credentials are wrong or not allowed."""


class NotFound(ApiError):
    """404: the resource does not exist (or no longer does)."""


class TransportError(StuckTasksError):
    """No HTTP answer. ``sent`` tells whether the request may have reached Twilio."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class BadResponse(StuckTasksError):
    """The answer was not Twilio's JSON (a proxy page, a wrong --base-url)."""


class DeadlineExceeded(StuckTasksError):
    """The run's overall deadline passed before the work settled."""
