"""A local emulator of the Twilio REST API (TaskRouter Tasks/Workspaces, v2010 Accounts/Calls).

Self-contained: it imports neither ``twilio`` nor any other ``stuck_tasks`` module.
"""

from __future__ import annotations

from .emulator import Emulator
from .faults import PLATFORM_EVENT_KINDS, Faults
from .model import (
    Account,
    ApiKey,
    CallView,
    Change,
    LoggedRequest,
    Mutation,
    PlatformEvent,
    TaskView,
    Workspace,
)
from .seed import KIND_VERDICTS, SandboxWorld, SeedReport, sandbox_world, seed_outage

__all__ = [
    "KIND_VERDICTS",
    "PLATFORM_EVENT_KINDS",
    "Account",
    "ApiKey",
    "CallView",
    "Change",
    "Emulator",
    "Faults",
    "LoggedRequest",
    "Mutation",
    "PlatformEvent",
    "SandboxWorld",
    "SeedReport",
    "TaskView",
    "Workspace",
    "sandbox_world",
    "seed_outage",
]
