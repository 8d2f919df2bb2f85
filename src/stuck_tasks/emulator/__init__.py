"""A local emulator of the Twilio REST API.

TaskRouter Tasks/Workspaces, v2010 Accounts/Calls/Conferences, Flex Interaction channels and
participants, Conversations.

Self-contained: it imports neither ``twilio`` nor any other ``stuck_tasks`` module.
"""

from __future__ import annotations

from .emulator import Emulator
from .faults import OPT_IN_PLATFORM_EVENT_KINDS, PLATFORM_EVENT_KINDS, Faults
from .model import (
    Account,
    ApiKey,
    CallView,
    Change,
    ConferenceView,
    ConversationView,
    FlexWrite,
    InteractionChannelView,
    InteractionRefs,
    LoggedRequest,
    Mutation,
    ParticipantView,
    PlatformEvent,
    TaskChange,
    TaskView,
    Workspace,
)
from .seed import (
    EXTRA_KINDS,
    KIND_VERDICTS,
    VOICE_KINDS,
    SandboxWorld,
    SeedReport,
    sandbox_world,
    seed_outage,
)

__all__ = [
    "EXTRA_KINDS",
    "KIND_VERDICTS",
    "OPT_IN_PLATFORM_EVENT_KINDS",
    "PLATFORM_EVENT_KINDS",
    "VOICE_KINDS",
    "Account",
    "ApiKey",
    "CallView",
    "Change",
    "ConferenceView",
    "ConversationView",
    "Emulator",
    "Faults",
    "FlexWrite",
    "InteractionChannelView",
    "InteractionRefs",
    "LoggedRequest",
    "Mutation",
    "ParticipantView",
    "PlatformEvent",
    "SandboxWorld",
    "SeedReport",
    "TaskChange",
    "TaskView",
    "Workspace",
    "sandbox_world",
    "seed_outage",
]
