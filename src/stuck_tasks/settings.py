"""What a run is told by the click layer: frozen, twilio-free, and never holding a secret in a repr."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from .guards import Limits
from .models import Rules


@dataclass(frozen=True)
class Credentials:
    """Basic-auth credentials: an account SID and auth token, or an API key and secret.

    ``source`` says where they came from ("flags", "the environment", "./.env", a twilio-cli
    profile, ...), for the plan and audit headers; it never holds a secret.
    """

    username: str
    password: str = field(repr=False)
    account_sid: str
    source: str = "flags"

    @property
    def is_api_key(self) -> bool:
        return self.username.startswith("SK")

    @property
    def key_sid(self) -> str | None:
        return self.username if self.is_api_key else None

    def describe(self) -> str:
        """One line for headers: which credential, from where (never the secret)."""
        what = f"API key {self.username}" if self.is_api_key else "auth token"
        return f"{what} for account {self.account_sid}, from {self.source}"


@dataclass(frozen=True)
class Connection:
    """Where and how to reach Twilio."""

    credentials: Credentials
    region: str | None = None
    edge: str | None = None
    base_url: str | None = None  # https://..., or http:// on loopback (an emulator)
    timeout: float = 15.0
    pool_size: int = 20


@dataclass(frozen=True)
class Scope:
    """Which tasks a run looks at, with names already resolved to SIDs."""

    workspace_sid: str
    # Task list query parameters, by Twilio's names (TaskQueueSid, WorkflowSid).
    filters: Mapping[str, str] = field(default_factory=dict)
    task_sids: tuple[str, ...] = ()
    limit: int | None = None


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, validated by the click layer."""

    connection: Connection
    run_id: str
    workspace: str | None = None
    task_queue: str | None = None
    workflow: str | None = None
    task_sids: tuple[str, ...] = ()
    limit: int | None = None
    grace: timedelta = timedelta(minutes=2)
    messaging: bool = False
    wrapping_after: timedelta | None = None
    concurrency: int = 25
    deadline: float = 1800.0
    reason: str = "Orchestration issue: closed stuck voice Task."
    dry_run: bool = False
    assume_yes: bool = False
    audit_log: Path | None = None
    limits: Limits = field(default_factory=Limits)
    save_plan: Path | None = None
    apply_plan: Path | None = None
    max_plan_age: timedelta = timedelta(hours=1)
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rules(self) -> Rules:
        return Rules(grace=self.grace, messaging=self.messaging, wrapping_after=self.wrapping_after)

    @property
    def writes(self) -> bool:
        """False for runs that only plan (``--dry-run``, ``--save-plan``)."""
        return not (self.dry_run or self.save_plan is not None)

    @property
    def write_reason(self) -> str:
        """The Reason written to each task: ties TaskRouter's event history to the audit log."""
        return f"{self.reason} (stuck-tasks run {self.run_id})"
