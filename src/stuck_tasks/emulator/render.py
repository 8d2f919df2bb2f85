"""JSON shapes of Twilio resources, field for field as in the official OpenAPI definitions."""

from __future__ import annotations

import functools
import json
import math
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any

from .model import (
    Account,
    CallRecord,
    ChannelRecord,
    ConferenceRecord,
    ConversationRecord,
    ParticipantRecord,
    TaskQueue,
    TaskRecord,
    Workflow,
    Workspace,
)

JSON = dict[str, Any]

ERROR_MESSAGES = {
    20003: "Authenticate",
    20004: "Method not allowed",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    70051: "Authorization Failed",
    80906: "Interaction Not Open",
    20503: "Service Unavailable",
}


def iso(dt: datetime) -> str:
    """TaskRouter timestamps: ISO 8601 in UTC with a Z, second precision."""
    u = dt.astimezone(timezone.utc)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}Z"


def rfc2822(dt: datetime | None) -> str | None:
    """v2010 timestamps, e.g. "Sat, 28 Nov 2026 20:15:44 +0000"."""
    if dt is None:
        return None
    return _rfc2822_at(math.floor(dt.timestamp()))


def imf_fixdate(dt: datetime) -> str:
    """The HTTP Date header (RFC 7231 IMF-fixdate, whole seconds): "Sun, 06 Nov 1994 08:49:37 GMT"."""
    return _fixdate_at(math.floor(dt.timestamp()))


# Formatting is cached per whole second: every answer carries a Date header and most carry
# timestamps, and email.utils formats slowly (the emulator shares the benchmark's cores).
@functools.lru_cache(maxsize=8192)
def _rfc2822_at(second: int) -> str:
    return format_datetime(datetime.fromtimestamp(second, timezone.utc))


@functools.lru_cache(maxsize=64)
def _fixdate_at(second: int) -> str:
    return format_datetime(datetime.fromtimestamp(second, timezone.utc), usegmt=True)


def error_body(status: int, code: int, message: str | None = None) -> JSON:
    return {
        "code": code,
        "message": message if message is not None else ERROR_MESSAGES.get(code, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def task_json(t: TaskRecord, base: str, now: datetime, *, full: bool) -> JSON:
    ws_url = f"{base}/v1/Workspaces/{t.workspace_sid}"
    url = f"{ws_url}/Tasks/{t.sid}"
    created = iso(t.date_created)
    return {
        "account_sid": t.account_sid,
        "age": max(0, int((now - t.date_created).total_seconds())),
        "assignment_status": t.status,
        # Conflicting sources: the schema prose says attributes are "only displayed in FETCH
        # action that returns a single resource. Otherwise, it will be null", the spec's own list
        # examples (and Twilio's support script) show them. Lists follow the prose (stricter: a
        # client must fetch each task to read them) unless Faults.list_attributes is set.
        "attributes": t.attributes if full else None,
        "addons": "{}",
        "date_created": created,
        "date_updated": iso(t.date_updated),
        "task_queue_entered_date": created,
        "virtual_start_time": created,
        "priority": t.priority,
        "reason": t.reason,
        "sid": t.sid,
        "task_queue_sid": t.queue_sid,
        "task_queue_friendly_name": t.queue,
        "task_channel_sid": t.channel_sid,
        "task_channel_unique_name": t.channel,
        "timeout": t.timeout,
        "workflow_sid": t.workflow_sid,
        "workflow_friendly_name": t.workflow,
        "workspace_sid": t.workspace_sid,
        "url": url,
        "links": {
            "task_queue": f"{ws_url}/TaskQueues/{t.queue_sid}",
            "workflow": f"{ws_url}/Workflows/{t.workflow_sid}",
            "workspace": ws_url,
            "reservations": f"{url}/Reservations",
        },
        "ignore_capacity": False,
        "routing_target": None,
    }


def workspace_json(ws: Workspace, base: str) -> JSON:
    url = f"{base}/v1/Workspaces/{ws.sid}"
    links = {
        name: f"{url}/{path}"
        for name, path in (
            ("activities", "Activities"),
            ("cumulative_statistics", "CumulativeStatistics"),
            ("events", "Events"),
            ("real_time_statistics", "RealTimeStatistics"),
            ("statistics", "Statistics"),
            ("task_channels", "TaskChannels"),
            ("task_queues", "TaskQueues"),
            ("tasks", "Tasks"),
            ("workers", "Workers"),
            ("workflows", "Workflows"),
        )
    }
    return {
        "account_sid": ws.account_sid,
        "date_created": iso(ws.date_created),
        "date_updated": iso(ws.date_created),
        "default_activity_name": "Offline",
        "default_activity_sid": ws.default_activity_sid,
        "event_callback_url": None,
        "events_filter": None,
        "friendly_name": ws.friendly_name,
        "multi_task_enabled": True,
        "prioritize_queue_order": "FIFO",
        "sid": ws.sid,
        "timeout_activity_name": "Offline",
        "timeout_activity_sid": ws.timeout_activity_sid,
        "url": url,
        "links": links,
    }


def task_queue_json(q: TaskQueue, base: str) -> JSON:
    """taskrouter.v1.workspace.task_queue; ``links`` as in the spec's list example."""
    ws_url = f"{base}/v1/Workspaces/{q.workspace_sid}"
    url = f"{ws_url}/TaskQueues/{q.sid}"
    return {
        "account_sid": q.account_sid,
        # No Activity is set on a queue the emulator makes (both are optional when creating
        # a queue): null, the case a client must handle, with no activity links.
        "assignment_activity_sid": None,
        "assignment_activity_name": None,
        "date_created": iso(q.date_created),
        "date_updated": iso(q.date_created),
        "friendly_name": q.friendly_name,
        "max_reserved_workers": 1,
        "reservation_activity_sid": None,
        "reservation_activity_name": None,
        "sid": q.sid,
        "target_workers": "1==1",  # the schema's documented default
        "task_order": "FIFO",
        "url": url,
        "workspace_sid": q.workspace_sid,
        "links": {
            "workspace": ws_url,
            "statistics": f"{url}/Statistics",
            "real_time_statistics": f"{url}/RealTimeStatistics",
            "cumulative_statistics": f"{url}/CumulativeStatistics",
            "list_statistics": f"{ws_url}/TaskQueues/Statistics",
            "bulk_real_time_statistics": f"{ws_url}/TaskQueues/RealTimeStatistics",
        },
    }


def workflow_json(w: Workflow, base: str) -> JSON:
    """taskrouter.v1.workspace.workflow; ``configuration`` is a JSON string, as Twilio's is."""
    url = f"{base}/v1/Workspaces/{w.workspace_sid}/Workflows/{w.sid}"
    routing: JSON = {"filters": []}
    if w.default_queue_sid is not None:
        routing["default_filter"] = {"queue": w.default_queue_sid}
    return {
        "account_sid": w.account_sid,
        "assignment_callback_url": None,
        "configuration": json.dumps({"task_routing": routing}),
        "date_created": iso(w.date_created),
        "date_updated": iso(w.date_created),
        "document_content_type": "application/json",
        "fallback_assignment_callback_url": None,
        "friendly_name": w.friendly_name,
        "sid": w.sid,
        "task_reservation_timeout": 120,  # the documented default
        "workspace_sid": w.workspace_sid,
        "url": url,
        "links": {
            "statistics": f"{url}/Statistics",
            "real_time_statistics": f"{url}/RealTimeStatistics",
            "cumulative_statistics": f"{url}/CumulativeStatistics",
        },
    }


def account_json(acct: Account) -> JSON:
    uri = f"/2010-04-01/Accounts/{acct.sid}"
    subresources = (
        "addresses",
        "applications",
        "authorized_connect_apps",
        "available_phone_numbers",
        "calls",
        "conferences",
        "connect_apps",
        "incoming_phone_numbers",
        "keys",
        "messages",
        "notifications",
        "outgoing_caller_ids",
        "queues",
        "recordings",
        "sip",
        "transcriptions",
        "usage",
    )
    camel = {name: "".join(p.capitalize() for p in name.split("_")) for name in subresources}
    camel["sip"] = "SIP"
    return {
        # Twilio returns the auth token (twilio-oai api.v2010.account, field auth_token): a
        # client that logs or stores this body leaks it, so the emulator returns it too.
        "auth_token": acct.auth_token,
        "date_created": rfc2822(acct.date_created),
        "date_updated": rfc2822(acct.date_created),
        "friendly_name": acct.friendly_name,
        "owner_account_sid": acct.sid,
        "sid": acct.sid,
        "status": "active",
        "subresource_uris": {name: f"{uri}/{camel[name]}.json" for name in subresources},
        "type": "Full",
        "uri": f"{uri}.json",
    }


def _formatted(number: str) -> str:
    digits = number[2:]
    if number.startswith("+1") and len(digits) == 10 and digits.isdigit():
        return f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    return number


def call_json(c: CallRecord) -> JSON:
    uri = f"/2010-04-01/Accounts/{c.account_sid}/Calls/{c.sid}"
    duration: str | None = None
    if c.status == "completed" and c.end_time is not None and c.start_time is not None:
        duration = str(max(0, int((c.end_time - c.start_time).total_seconds())))
    subresources = (
        ("events", "Events"),
        ("notifications", "Notifications"),
        ("payments", "Payments"),
        ("recordings", "Recordings"),
        ("siprec", "Siprec"),
        ("streams", "Streams"),
        ("transcriptions", "Transcriptions"),
        ("user_defined_message_subscriptions", "UserDefinedMessageSubscriptions"),
        ("user_defined_messages", "UserDefinedMessages"),
    )
    return {
        "sid": c.sid,
        "date_created": rfc2822(c.date_created),
        "date_updated": rfc2822(c.date_updated),
        "parent_call_sid": None,
        "account_sid": c.account_sid,
        "to": c.to,
        "to_formatted": _formatted(c.to),
        "from": c.from_,
        "from_formatted": _formatted(c.from_),
        "phone_number_sid": c.phone_number_sid,
        "status": c.status,
        "start_time": rfc2822(c.start_time),
        "end_time": rfc2822(c.end_time),
        "duration": duration,
        # "Populated after the call is completed. May not be immediately available": null is the
        # harder case for clients, so we never fill it in.
        "price": None,
        "price_unit": "USD",
        "direction": c.direction,
        "answered_by": None,
        "api_version": "2010-04-01",
        "forwarded_from": None,
        "group_sid": None,
        "caller_name": None,
        "queue_time": "0",
        "trunk_sid": None,
        "uri": f"{uri}.json",
        "subresource_uris": {name: f"{uri}/{path}.json" for name, path in subresources},
    }


def conference_json(c: ConferenceRecord) -> JSON:
    uri = f"/2010-04-01/Accounts/{c.account_sid}/Conferences/{c.sid}"
    return {
        "account_sid": c.account_sid,
        "date_created": rfc2822(c.date_created),
        "date_updated": rfc2822(c.date_updated),
        "api_version": "2010-04-01",
        "friendly_name": c.friendly_name,
        "region": c.region,
        "sid": c.sid,
        "status": c.status,
        "uri": f"{uri}.json",
        "subresource_uris": {
            "participants": f"{uri}/Participants.json",
            "recordings": f"{uri}/Recordings.json",
        },
        "reason_conference_ended": c.reason_conference_ended,
        "call_sid_ending_conference": c.call_sid_ending_conference,
    }


def interaction_channel_json(ch: ChannelRecord, base: str) -> JSON:
    url = f"{base}/v1/Interactions/{ch.interaction_sid}/Channels/{ch.sid}"
    return {
        "sid": ch.sid,
        "interaction_sid": ch.interaction_sid,
        "type": ch.type,
        "status": ch.status,
        "error_code": ch.error_code,
        "error_message": ch.error_message,
        "url": url,
        "links": {
            "participants": f"{url}/Participants",
            "invites": f"{url}/Invites",
            "transfers": f"{url}/Transfers",
        },
    }


def interaction_participant_json(p: ParticipantRecord, base: str) -> JSON:
    channel_url = f"{base}/v1/Interactions/{p.interaction_sid}/Channels/{p.channel_sid}"
    routing: JSON | None = None
    if p.task_sid is not None:
        # Shape of the spec examples: agents carry their task, worker and reservation.
        routing = {
            "task_sid": p.task_sid,
            "worker_sid": p.worker_sid,
            "reservation_sid": p.reservation_sid,
        }
    return {
        "sid": p.sid,
        "type": p.type,
        "interaction_sid": p.interaction_sid,
        "channel_sid": p.channel_sid,
        "url": f"{channel_url}/Participants/{p.sid}",
        "routing_properties": routing,
    }


def conversation_json(c: ConversationRecord, base: str) -> JSON:
    url = f"{base}/v1/Conversations/{c.sid}"
    return {
        "account_sid": c.account_sid,
        "chat_service_sid": c.chat_service_sid,
        "messaging_service_sid": c.messaging_service_sid,
        "sid": c.sid,
        "friendly_name": c.friendly_name,
        "unique_name": None,
        "attributes": c.attributes,
        "state": c.state,
        "date_created": iso(c.date_created),
        "date_updated": iso(c.date_updated),
        # Close timers are never configured by the emulator; bindings (the spec shows {}) are
        # answered as null, the harder case for a client that indexes into them.
        "timers": {},
        "url": url,
        "links": {
            "participants": f"{url}/Participants",
            "messages": f"{url}/Messages",
            "webhooks": f"{url}/Webhooks",
            "export": f"{url}/Export",
        },
        "bindings": None,
    }
