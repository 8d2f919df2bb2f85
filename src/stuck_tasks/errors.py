"""Errors raised below the click layer.

Hierarchy::

    StuckTasksError              anything the CLI turns into one clear line
    ├── ConfigError              bad or missing configuration; exit 2
    ├── ApiError                 any Twilio error answer (status, code, Retry-After)
    │   ├── AuthError            401/403: credentials refused or not allowed; exit 2
    │   │   └── PermissionDenied 403/70051: a Restricted API key lacks a permission
    │   └── NotFound             404 (task purged, call unknown, workspace unknown)
    ├── TransportError           no usable answer: refused, timed out, dropped
    ├── BadResponse              an answer that is not the JSON Twilio sends, or of the wrong shape
    ├── DeadlineExceeded         the run's --deadline passed
    ├── AuditFailed              the audit log could not be written (disk full, I/O error)
    └── Stopped                  the run is stopping: this request was not sent
"""

from __future__ import annotations


class StuckTasksError(Exception):
    """Base class: its message is one line a person can act on."""


class ConfigError(StuckTasksError):
    """The configuration cannot work (exit code 2)."""


class ApiError(StuckTasksError):
    """Twilio answered with an error body."""

    def __init__(
        self,
        status: int,
        code: int | None,
        message: str,
        *,
        retry_after: float | None = None,
        kind: str = "",
    ) -> None:
        super().__init__(f"HTTP {status}, Twilio error {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.kind = kind  # the request kind ("update_task", "fetch_call", ...)

    @property
    def retryable(self) -> bool:
        """429 is never processed, 5xx is transient: both may be tried again."""
        return self.status == 429 or self.status >= 500


class AuthError(ApiError):
    """401/403: the credentials are wrong, revoked, or not allowed."""


class PermissionDenied(AuthError):
    """403 with Twilio error 70051: a Restricted API key lacks the permission for a request."""


class NotFound(ApiError):
    """404: the resource does not exist (or no longer does)."""


class TransportError(StuckTasksError):
    """No HTTP answer. ``sent`` tells whether the request may have reached Twilio."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class BadResponse(StuckTasksError):
    """The answer was not Twilio's JSON, or not of the shape Twilio documents."""


class DeadlineExceeded(StuckTasksError):
    """The run's overall deadline passed before the work settled."""


class AuditFailed(StuckTasksError):
    """The audit log could not be written: no write may start after this."""


class Stopped(StuckTasksError):
    """The run is stopping (a signal, a fatal error): a request that does not settle a write
    already sent is not sent at all."""


def describe(error: Exception) -> str:
    """One line for an error, for details in the plan, the summary and the audit log."""
    if isinstance(error, ApiError):
        return f"HTTP {error.status}, error {error.code}: {error.message}"
    return str(error) or type(error).__name__
