"""Who may call which route: auth token and API key kinds (TWILIO_FACTS §0, §7).

- Main key: the same access as the auth token.
- Standard key (the Console's default): everything except the Accounts resource, which answers
  401/20003 "Authenticate" (twilio/twilio-python issue #259, maintainers: expected;
  https://www.twilio.com/docs/iam/api-keys/keys-in-console).
- Restricted key: only the routes whose permission it holds; any other route answers 403/70051
  "Authorization Failed" (https://www.twilio.com/docs/api/errors/70051: "the key may be missing
  a permission to access the resource" / "permission to access the resource may not be
  supported").
"""

from __future__ import annotations

from dataclasses import dataclass

KEY_KINDS: tuple[str, ...] = ("main", "standard", "restricted")

# Route kind -> the Restricted-key permission that grants it; None: no permission can.
# The exact names are an inference from Twilio's policy format (the IAM Keys example is
# "/twilio/messaging/messages/read"): /twilio/{product}/{resource path}/{action}.
PERMISSIONS: dict[str, str | None] = {
    "list_workspaces": "/twilio/taskrouter/workspaces/read",
    "fetch_workspace": "/twilio/taskrouter/workspaces/read",
    "list_task_queues": "/twilio/taskrouter/workspaces/task-queues/read",
    "list_workflows": "/twilio/taskrouter/workspaces/workflows/read",
    "list_tasks": "/twilio/taskrouter/workspaces/tasks/read",
    "fetch_task": "/twilio/taskrouter/workspaces/tasks/read",
    "update_task": "/twilio/taskrouter/workspaces/tasks/update",
    "fetch_call": "/twilio/voice/calls/read",
    "list_conferences": "/twilio/voice/conferences/read",
    "fetch_conference": "/twilio/voice/conferences/read",
    "fetch_conversation": "/twilio/conversations/conversations/read",
    # Flex is on no Restricted-key product list (Restricted keys GA changelog, 2025-12-10:
    # Messaging, Phone Numbers, Voice, Studio, Verify, TaskRouter, Lookup, Monitor, Event
    # Streams, Usage; Conversations since 2026-07-31): a Restricted key never reaches it.
    "fetch_interaction_channel": None,
    "update_interaction_channel": None,
    "list_interaction_participants": None,
    "update_interaction_participant": None,
    # Accounts is on no permission list.
    "fetch_account": None,
}


@dataclass(frozen=True)
class Principal:
    """Whoever a request's credentials name; ``kind`` is "token" for the auth token."""

    account_sid: str
    region: str
    kind: str
    permissions: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Refusal:
    status: int
    code: int
    message: str


def refusal(principal: Principal, kind: str) -> Refusal | None:
    """Why ``principal`` may not call route ``kind``, or None. Unknown routes ("other") pass:
    they answer 404/405 on their own."""
    if kind not in PERMISSIONS or principal.kind in ("token", "main"):
        return None
    if principal.kind == "standard":
        if kind == "fetch_account":
            return Refusal(401, 20003, "Authenticate")
        return None
    permission = PERMISSIONS[kind]
    if permission is None or permission not in principal.permissions:
        return Refusal(403, 70051, "Authorization Failed")
    return None
