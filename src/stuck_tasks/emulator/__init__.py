"""A local emulator of the Twilio REST API.

TaskRouter Workspaces/Tasks/TaskQueues/Workflows, v2010 Accounts/Calls/Conferences, Flex Interaction channels and
participants, Conversations.

Self-contained: it imports neither ``twilio`` nor any other ``stuck_tasks`` module.

Clients connect to the emulator's loopback address and send the Twilio host they mean in the
``Host`` header (``twilio_host(product, region)``); any other Host answers 404/20404.
"""

from __future__ import annotations

from .access import KEY_KINDS, PERMISSIONS
from .emulator import Emulator
from .faults import (
    CLOSED_CHANNEL_CLOSE_MODES,
    OPT_IN_PLATFORM_EVENT_KINDS,
    PLATFORM_EVENT_KINDS,
    Faults,
)
from .hosts import PRODUCTS, REGION_EDGES, REGIONS, twilio_host
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
    TaskQueue,
    TaskView,
    Workflow,
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
from .sids import SidSource

__all__ = [
    "CLOSED_CHANNEL_CLOSE_MODES",
    "EXTRA_KINDS",
    "KEY_KINDS",
    "KIND_VERDICTS",
    "OPT_IN_PLATFORM_EVENT_KINDS",
    "PERMISSIONS",
    "PLATFORM_EVENT_KINDS",
    "PRODUCTS",
    "REGIONS",
    "REGION_EDGES",
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
    "SidSource",
    "TaskChange",
    "TaskQueue",
    "TaskView",
    "Workflow",
    "Workspace",
    "sandbox_world",
    "seed_outage",
    "twilio_host",
]
