"""The emulated Twilio account data and every rule that changes it.

All state lives behind one ``threading.Lock``; every section that holds it is short and never
awaits, so test threads and the server's event loop can both use a World safely.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import heapq
import hmac
import itertools
import json
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from . import render
from .access import KEY_KINDS, Principal
from .faults import Faults
from .hosts import REGIONS
from .model import (
    CALL_STATUSES,
    CHANNEL_STATUSES,
    CHANNEL_TYPES,
    CLOSED_TASK_STATUSES,
    CONFERENCE_STATUSES,
    CONVERSATION_STATES,
    LIVE_CALL_STATUSES,
    PARTICIPANT_STATUSES,
    TASK_STATUSES,
    Account,
    ApiKey,
    CallRecord,
    CallView,
    Change,
    ChannelRecord,
    ConferenceRecord,
    ConferenceView,
    ConversationRecord,
    ConversationView,
    FlexWrite,
    InteractionChannelView,
    InteractionRefs,
    LoggedRequest,
    Mutation,
    ParticipantRecord,
    PlatformEvent,
    TaskChange,
    TaskQueue,
    TaskRecord,
    TaskView,
    Workflow,
    Workspace,
)
from .sids import SidSource

Key = tuple[int, str]
JSON = dict[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50

# (from, to) pairs the API accepts (TWILIO_FACTS §2.3).
API_TRANSITIONS = frozenset(
    {
        ("pending", "reserved"),
        ("reserved", "pending"),
        ("reserved", "assigned"),
        ("pending", "canceled"),
        ("reserved", "canceled"),
        ("assigned", "wrapping"),
        ("assigned", "completed"),
        ("wrapping", "completed"),
    }
)

_TRANSITION_ERRORS = {
    "canceled": "Cannot cancel task {t} in workspace {w} for account {a} because it is not "
    "pending or reserved.",
    "completed": "Cannot complete task {t} in workspace {w} for account {a} because it is not "
    "assigned or wrapping.",
    "wrapping": "Cannot wrap up a task {t} in workspace {w} for account {a} because it's not "
    "currently assigned",
    "assigned": "Cannot assign task {t} in workspace {w} for account {a} because it is not "
    "reserved.",
    "reserved": "Cannot reserve task {t} in workspace {w} for account {a} because it is not "
    "pending.",
    "pending": "Cannot move task {t} in workspace {w} for account {a} back to pending because it "
    "is not reserved.",
}

_UPDATE_FIELDS = frozenset({"AssignmentStatus", "Reason", "Attributes", "Priority"})
_CONVERSATION_KEYS = ("flexInteractionSid", "flexInteractionChannelSid", "conversationSid")
# A channel in one of these states is not open: another close answers 80906.
_NOT_OPEN_CHANNEL_STATUSES = frozenset({"closed", "failed"})
_PAGING_PARAMS = frozenset({"PageSize", "Page", "PageToken"})


class ApiError(Exception):
    """An error answered as Twilio's JSON error body."""

    def __init__(self, status: int, code: int, message: str | None = None) -> None:
        super().__init__(message or render.ERROR_MESSAGES.get(code, "Error"))
        self.status = status
        self.code = code
        self.message = str(self)

    def body(self) -> JSON:
        return render.error_body(self.status, self.code, self.message)


def not_found() -> ApiError:
    return ApiError(404, 20404)


def _own_account(account_sid: str, path_account: str) -> None:
    """Credentials of account A on a v2010 path of account B: 401/20003, not 404 (error 20003
    page: "subaccount credentials on the parent account" and similar; TWILIO_FACTS §0). The
    emulator has no subaccounts, so any other account is refused, a parent's own ones too."""
    if path_account != account_sid:
        raise ApiError(401, 20003, "Authenticate")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _key(dt: datetime, sid: str) -> Key:
    return ((dt - _EPOCH) // _MICRO, sid)


def _encode_token(kind: str, key: Key, *, ascending: bool) -> str:
    raw = f"{kind}{'a' if ascending else 'd'}:{key[0]}:{key[1]}".encode()
    return "PT" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, *, ascending: bool) -> tuple[str, Key]:
    bad = ApiError(400, 20001, "Invalid PageToken")
    if not token.startswith("PT"):
        raise bad
    body = token[2:]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        head, micros, sid = raw.split(":", 2)
        key = (int(micros), sid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if len(head) != 2 or head[0] not in "np" or head[1] != ("a" if ascending else "d"):
        # Undocumented: a token used with a different Ordering is rejected (stricter).
        raise bad
    return head[0], key


def _walk(lst: list[Key], positions: range) -> Iterator[Key]:
    for i in positions:
        yield lst[i]


def _iter_sorted(
    lists: Sequence[list[Key]], bound: Key | None, *, ascending: bool
) -> Iterator[Key]:
    """Keys strictly after ``bound`` in the given direction, merged over sorted lists."""
    gens: list[Iterator[Key]] = []
    for lst in lists:
        if ascending:
            start = 0 if bound is None else bisect.bisect_right(lst, bound)
            gens.append(_walk(lst, range(start, len(lst))))
        else:
            start = (len(lst) if bound is None else bisect.bisect_left(lst, bound)) - 1
            gens.append(_walk(lst, range(start, -1, -1)))
    if len(gens) == 1:
        return gens[0]
    return heapq.merge(*gens, reverse=not ascending)


def _mapping_list(query: Mapping[str, list[str]], name: str) -> list[str]:
    return query.get(name, [])


def _single(query: Mapping[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


class World:
    """Accounts, workspaces, tasks and calls, plus the records tests read back."""

    def __init__(
        self,
        faults: Faults | None = None,
        clock: Callable[[], datetime] | None = None,
        *,
        sids: SidSource | None = None,
    ) -> None:
        """:param sids: where SIDs come from; the default mints uuid4s, ``SidSource(seed)``
        repeats the same SIDs for the same sequence of set-up calls."""
        self._lock = threading.Lock()
        self._sids = sids or SidSource()
        self._base_clock = clock or _utcnow
        self._faults = faults or Faults()
        self._requests_since_faults = 0
        self._faults_set_at = time.monotonic()
        self._rng = random.Random(self._faults.seed)
        self._accounts: dict[str, Account] = {}
        self._keys: dict[str, ApiKey] = {}
        self._workspaces: dict[str, Workspace] = {}
        self._ws_index: dict[str, list[Key]] = {}
        self._named_sids: dict[tuple[str, str, str], str] = {}
        # Per workspace: name -> record and the (date_created, sid) keys in list order; then
        # every queue and workflow by SID.
        self._queues: dict[str, dict[str, TaskQueue]] = {}
        self._queue_index: dict[str, list[Key]] = {}
        self._workflows: dict[str, dict[str, Workflow]] = {}
        self._workflow_index: dict[str, list[Key]] = {}
        self._queue_sids: dict[str, TaskQueue] = {}
        self._workflow_sids: dict[str, Workflow] = {}
        self._tasks: dict[str, TaskRecord] = {}
        self._index: dict[str, dict[str, list[Key]]] = {}
        self._calls: dict[str, CallRecord] = {}
        self._live_calls: list[str] = []
        self._live_pos: dict[str, int] = {}
        self._mutations: list[Mutation] = []
        self._events: list[PlatformEvent] = []
        self._log: list[LoggedRequest] = []
        self._seq = itertools.count(1)
        self._stats: Counter[str] = Counter()
        self._in_flight: dict[str, int] = {}
        self._max_in_flight = 0
        self._server_errors = 0
        self._broken_calls: set[str] = set()
        self._conferences: dict[str, ConferenceRecord] = {}
        self._conf_index: dict[str, list[Key]] = {}
        self._conf_by_name: dict[tuple[str, str], list[Key]] = {}
        self._channels: dict[str, ChannelRecord] = {}
        self._conversations: dict[str, ConversationRecord] = {}
        self._flex_writes: list[FlexWrite] = []

    # ----------------------------------------------------------------- clock

    def _clock(self) -> datetime:
        """Twilio's clock: the real (or injected) UTC clock plus ``faults.clock_offset``."""
        return self._base_clock() + timedelta(seconds=self._faults.clock_offset)

    def now(self) -> datetime:
        """The emulated Twilio clock (what timestamps and the HTTP Date header say)."""
        return self._clock()

    # ----------------------------------------------------------------- setup (platform side)

    def add_account(self, friendly_name: str = "Test Account", *, region: str = "us1") -> Account:
        """An account living in ``region`` ("us1", "ie1" or "au1"): only hosts of that region
        accept its credentials."""
        if region not in REGIONS:
            raise ValueError(f"unknown region {region!r}; one of {list(REGIONS)}")
        acct = Account(
            self._sids("AC"), secrets.token_hex(16), friendly_name, self._clock(), region
        )
        with self._lock:
            self._accounts[acct.sid] = acct
            self._ws_index[acct.sid] = []
            self._conf_index[acct.sid] = []
        return acct

    def add_api_key(
        self,
        account_sid: str,
        friendly_name: str = "key",
        *,
        kind: str = "standard",
        permissions: Sequence[str] = (),
    ) -> ApiKey:
        """An API key of ``kind`` "main", "standard" (the Console's default) or "restricted".

        :param permissions: Restricted keys only: permission strings such as
            ``/twilio/taskrouter/workspaces/tasks/read`` (see ``PERMISSIONS``).
        """
        if kind not in KEY_KINDS:
            raise ValueError(f"unknown key kind {kind!r}; one of {list(KEY_KINDS)}")
        if isinstance(permissions, str):
            raise TypeError("permissions must be a sequence of strings, not one string")
        perms = tuple(permissions)
        if perms and kind != "restricted":
            raise ValueError("only restricted keys carry permissions")
        malformed = [p for p in perms if not (isinstance(p, str) and p.startswith("/twilio/"))]
        if malformed:
            # Policy form, e.g. /twilio/messaging/messages/read. Permissions that no emulated
            # route needs (Messaging, ...) are accepted: they grant nothing here.
            raise ValueError(f"permissions must look like /twilio/<product>/...: {malformed}")
        key = ApiKey(
            self._sids("SK"), secrets.token_urlsafe(24), account_sid, friendly_name, kind, perms
        )
        with self._lock:
            acct = self._accounts.get(account_sid)
            if acct is None:
                raise KeyError(account_sid)
            if kind == "restricted" and acct.region != "us1":
                # "Restricted API Keys is only available in the US region" (GA changelog,
                # 2025-12-10).
                raise ValueError("restricted API keys exist in the us1 region only")
            self._keys[key.sid] = key
        return key

    def add_workspace(self, account_sid: str, friendly_name: str = "Workspace") -> Workspace:
        ws = Workspace(
            self._sids("WS"),
            account_sid,
            friendly_name,
            self._clock(),
            self._sids("WA"),
            self._sids("WA"),
        )
        with self._lock:
            if account_sid not in self._accounts:
                raise KeyError(account_sid)
            self._workspaces[ws.sid] = ws
            self._index[ws.sid] = {status: [] for status in TASK_STATUSES}
            self._queues[ws.sid], self._queue_index[ws.sid] = {}, []
            self._workflows[ws.sid], self._workflow_index[ws.sid] = {}, []
            bisect.insort(self._ws_index[account_sid], _key(ws.date_created, ws.sid))
        return ws

    def add_call(
        self,
        account_sid: str,
        status: str = "completed",
        ended_ago: timedelta | None = timedelta(minutes=10),
        started_ago: timedelta | None = None,
        to: str = "+15555550100",
        from_: str = "+16785550100",
        direction: str = "inbound",
    ) -> str:
        """Create a call. ``ended_ago`` is used for terminal statuses only.

        end_time is set for ``completed`` only ("Empty if the call did not complete
        successfully"); date_updated is the moment the call ended.
        """
        if status not in CALL_STATUSES:
            raise ValueError(f"unknown call status {status!r}")
        now = self._clock()
        live = status in LIVE_CALL_STATUSES
        ended = None if live else now - (ended_ago or timedelta(0))
        if started_ago is not None:
            dialed = now - started_ago
        elif ended is not None:
            dialed = ended - timedelta(minutes=3)
        else:
            dialed = now - timedelta(minutes=1)
        created = dialed - timedelta(seconds=1)
        # "Empty if the call has not yet been dialed."
        start = None if status in ("queued", "canceled", "failed") else dialed
        record = CallRecord(
            sid=self._sids("CA"),
            account_sid=account_sid,
            status=status,
            direction=direction,
            to=to,
            from_=from_,
            date_created=created,
            date_updated=ended if ended is not None else (start or created),
            start_time=start,
            end_time=ended if status == "completed" else None,
            phone_number_sid=self._sids("PN") if direction == "inbound" else None,
        )
        with self._lock:
            if account_sid not in self._accounts:
                raise KeyError(account_sid)
            self._calls[record.sid] = record
            if live:
                self._live_add(record.sid)
        return record.sid

    def add_task(
        self,
        workspace_sid: str,
        status: str = "pending",
        channel: str = "voice",
        attributes: Mapping[str, Any] | Sequence[Any] | str | None = None,
        queue: str = "Sales",
        workflow: str = "Default",
        age: timedelta = timedelta(minutes=30),
        reason: str | None = None,
        priority: int = 0,
    ) -> str:
        """Create a task as the platform would have left it.

        ``attributes``: a str is stored verbatim (so tests can store invalid JSON), None is "{}",
        anything else is JSON-encoded.
        """
        if status not in TASK_STATUSES:
            raise ValueError(f"unknown task status {status!r}")
        if attributes is None:
            attrs = "{}"
        elif isinstance(attributes, str):
            attrs = attributes
        else:
            attrs = json.dumps(attributes)
        now = self._clock()
        created = now - age
        sid = self._sids("WT")
        with self._lock:
            ws = self._workspaces[workspace_sid]
            # A queue or workflow a task names exists no later than the task.
            queue_sid = self._task_queue_locked(ws, queue, created).sid
            closed = status in CLOSED_TASK_STATUSES
            if closed and reason is None:
                reason = "Task TTL Exceeded" if status == "canceled" else "Task completed"
            record = TaskRecord(
                sid=sid,
                account_sid=ws.account_sid,
                workspace_sid=ws.sid,
                status=status,
                reason=reason,
                channel=channel,
                channel_sid=self._named_sid(ws.sid, "TC", channel),
                attributes=attrs,
                queue=queue,
                queue_sid=queue_sid,
                workflow=workflow,
                workflow_sid=self._workflow_locked(ws, workflow, created, queue_sid).sid,
                priority=priority,
                timeout=86400,
                # Revisions start at 0: a falsy-looking ETag catches "if etag:" bugs.
                revision=0,
                date_created=created,
                date_updated=created if not closed else max(created, now - timedelta(minutes=1)),
                key=_key(created, sid),
            )
            if closed:
                record.closed_at = record.date_updated
            self._tasks[sid] = record
            self._index_add(record)
        return sid

    def add_conference(
        self,
        account_sid: str,
        *,
        friendly_name: str,
        status: str = "in-progress",
        ended_ago: timedelta | None = None,
        participants: Mapping[str, str] | None = None,
        started_ago: timedelta | None = None,
    ) -> str:
        """Create a v2010 conference; for ``completed`` date_updated is the moment it ended.

        ``participants`` maps a label ("customer", "worker") to a call SID, like the Flex task
        attribute ``conference.participants``.
        """
        if status not in CONFERENCE_STATUSES:
            raise ValueError(f"unknown conference status {status!r}")
        now = self._clock()
        ended = now - (ended_ago or timedelta(0)) if status == "completed" else None
        if started_ago is not None:
            created = now - started_ago
        else:
            created = (ended or now) - timedelta(minutes=5)
        parts = dict(participants or {})
        record = ConferenceRecord(
            sid=self._sids("CF"),
            account_sid=account_sid,
            friendly_name=friendly_name,
            status=status,
            date_created=created,
            date_updated=ended or created,
            key=(0, ""),
            participants=parts,
        )
        record.key = _key(created, record.sid)
        if ended is not None:
            record.reason_conference_ended = "participant-with-end-conference-on-exit-left"
            record.call_sid_ending_conference = parts.get("worker") or next(
                iter(parts.values()), None
            )
        with self._lock:
            if account_sid not in self._accounts:
                raise KeyError(account_sid)
            self._conferences[record.sid] = record
            bisect.insort(self._conf_index[account_sid], record.key)
            by_name = self._conf_by_name.setdefault((account_sid, friendly_name), [])
            bisect.insort(by_name, record.key)
        return record.sid

    def add_conversation(
        self, account_sid: str, state: str = "active", closed_ago: timedelta | None = None
    ) -> str:
        """Create a Conversation; ``closed_ago`` dates the close of a ``closed`` one."""
        if state not in CONVERSATION_STATES:
            raise ValueError(f"unknown conversation state {state!r}")
        now = self._clock()
        closed = now - (closed_ago or timedelta(0)) if state == "closed" else None
        created = (closed or now) - timedelta(minutes=30)
        record = ConversationRecord(
            sid=self._sids("CH"),
            account_sid=account_sid,
            chat_service_sid=self._sids("IS"),
            messaging_service_sid=self._sids("MG"),
            friendly_name=None,
            attributes="{}",
            state=state,
            date_created=created,
            date_updated=closed or created,
        )
        with self._lock:
            if account_sid not in self._accounts:
                raise KeyError(account_sid)
            self._conversations[record.sid] = record
        return record.sid

    def add_interaction(
        self,
        account_sid: str,
        *,
        workspace_sid: str,
        channel_status: str = "active",
        channel_type: str = "chat",
        task: Mapping[str, Any] | str | None = None,
        agent_status: str | None = "joined",
        conversation_sid: str | None = None,
    ) -> InteractionRefs:
        """Create a Flex interaction with one channel, a customer and (unless
        ``agent_status`` is None) an agent participant linked to the channel's task.

        :param task: an existing task SID, or ``add_task`` keyword arguments (default: an
            assigned task on the matching task channel); mapping attributes get
            flexInteractionSid, flexInteractionChannelSid, conversationSid and channelType.
        :param conversation_sid: the channel's conversation; None creates one (``closed`` when
            the channel is closed, else ``active``).
        """
        if channel_status not in CHANNEL_STATUSES:
            raise ValueError(f"unknown channel status {channel_status!r}")
        if channel_type not in CHANNEL_TYPES:
            raise ValueError(f"unknown channel type {channel_type!r}")
        if agent_status is not None and agent_status not in PARTICIPANT_STATUSES:
            raise ValueError(f"unknown participant status {agent_status!r}")
        kd, uo = self._sids("KD"), self._sids("UO")
        if conversation_sid is None:
            state = "closed" if channel_status == "closed" else "active"
            conversation_sid = self.add_conversation(account_sid, state)
        if isinstance(task, str):
            task_sid = task
            with self._lock:
                if self._tasks[task_sid].workspace_sid != workspace_sid:
                    raise KeyError(task_sid)
        else:
            kwargs = dict(task or {})
            kwargs.setdefault("status", "assigned")
            kwargs.setdefault(
                "channel", channel_type if channel_type in ("sms", "email") else "chat"
            )
            attrs = kwargs.get("attributes")
            if attrs is None or isinstance(attrs, Mapping):
                kwargs["attributes"] = {
                    "flexInteractionSid": kd,
                    "flexInteractionChannelSid": uo,
                    "conversationSid": conversation_sid,
                    "channelType": channel_type,
                    **(attrs or {}),
                }
            task_sid = self.add_task(workspace_sid, **kwargs)
        now = self._clock()
        channel = ChannelRecord(
            sid=uo,
            interaction_sid=kd,
            account_sid=account_sid,
            type=channel_type,
            status=channel_status,
            conversation_sid=conversation_sid,
            task_sids=[task_sid],
        )
        if channel_status == "failed":
            channel.error_code, channel.error_message = 19025, "Channel validation error"
        customer = ParticipantRecord(
            sid=self._sids("UT"),
            interaction_sid=kd,
            channel_sid=uo,
            type="customer",
            status="closed" if channel_status == "closed" else "joined",
            key=(0, ""),
        )
        customer.key = _key(now, customer.sid)
        participants = [customer]
        agent: ParticipantRecord | None = None
        if agent_status is not None:
            agent = ParticipantRecord(
                sid=self._sids("UT"),
                interaction_sid=kd,
                channel_sid=uo,
                type="agent",
                status=agent_status,
                key=(0, ""),
                task_sid=task_sid,
                worker_sid=self._sids("WK"),
                reservation_sid=self._sids("WR"),
            )
            agent.key = _key(now + _MICRO, agent.sid)
            participants.append(agent)
        for participant in participants:
            channel.participants[participant.sid] = participant
            channel.participant_keys.append(participant.key)
        with self._lock:
            if account_sid not in self._accounts:
                raise KeyError(account_sid)
            self._channels[uo] = channel
        return InteractionRefs(kd, uo, agent.sid if agent else None, task_sid, conversation_sid)

    def add_task_queue(self, workspace_sid: str, friendly_name: str) -> TaskQueue:
        """The workspace's TaskQueue named ``friendly_name``, made now unless a task or an
        earlier call already made it (one queue per name, so its SID is the tasks' one)."""
        now = self._clock()
        with self._lock:
            return self._task_queue_locked(self._workspaces[workspace_sid], friendly_name, now)

    def add_workflow(self, workspace_sid: str, friendly_name: str) -> Workflow:
        """The workspace's Workflow named ``friendly_name`` (idempotent like
        ``add_task_queue``); a new one routes to the workspace's oldest queue, if any."""
        now = self._clock()
        with self._lock:
            ws = self._workspaces[workspace_sid]
            oldest = self._queue_index[ws.sid][:1]
            return self._workflow_locked(ws, friendly_name, now, oldest[0][1] if oldest else None)

    def _task_queue_locked(self, ws: Workspace, name: str, created: datetime) -> TaskQueue:
        queue = self._queues[ws.sid].get(name)
        if queue is None:
            queue = TaskQueue(self._sids("WQ"), ws.account_sid, ws.sid, name, created)
            self._queues[ws.sid][name] = self._queue_sids[queue.sid] = queue
            bisect.insort(self._queue_index[ws.sid], _key(created, queue.sid))
        return queue

    def _workflow_locked(
        self, ws: Workspace, name: str, created: datetime, queue_sid: str | None
    ) -> Workflow:
        flow = self._workflows[ws.sid].get(name)
        if flow is None:
            sid = self._sids("WW")
            flow = Workflow(sid, ws.account_sid, ws.sid, name, created, queue_sid)
            self._workflows[ws.sid][name] = self._workflow_sids[flow.sid] = flow
            bisect.insort(self._workflow_index[ws.sid], _key(created, flow.sid))
        return flow

    def _named_sid(self, ws_sid: str, prefix: str, name: str) -> str:
        key = (ws_sid, prefix, name)
        sid = self._named_sids.get(key)
        if sid is None:
            sid = self._named_sids[key] = self._sids(prefix)
        return sid

    def _index_add(self, t: TaskRecord) -> None:
        lst = self._index[t.workspace_sid][t.status]
        if not lst or lst[-1] < t.key:
            lst.append(t.key)
        else:
            bisect.insort(lst, t.key)

    def _index_remove(self, t: TaskRecord) -> None:
        lst = self._index[t.workspace_sid][t.status]
        i = bisect.bisect_left(lst, t.key)
        if i < len(lst) and lst[i] == t.key:
            del lst[i]

    def _live_add(self, call_sid: str) -> None:
        self._live_pos[call_sid] = len(self._live_calls)
        self._live_calls.append(call_sid)

    def _live_remove(self, call_sid: str) -> None:
        i = self._live_pos.pop(call_sid, None)
        if i is None:
            return
        last = self._live_calls.pop()
        if last != call_sid:
            self._live_calls[i] = last
            self._live_pos[last] = i

    # ----------------------------------------------------------------- inspection

    def task(self, sid: str) -> TaskView:
        with self._lock:
            return self._tasks[sid].view()

    def tasks(self, workspace_sid: str | None = None) -> list[TaskView]:
        with self._lock:
            records = [
                t
                for t in self._tasks.values()
                if workspace_sid is None or t.workspace_sid == workspace_sid
            ]
            records.sort(key=lambda t: t.key)
            return [t.view() for t in records]

    def task_queues(self, workspace_sid: str) -> list[TaskQueue]:
        """The workspace's queues in list order (oldest first)."""
        with self._lock:
            return [self._queue_sids[k[1]] for k in self._queue_index[workspace_sid]]

    def workflows(self, workspace_sid: str) -> list[Workflow]:
        """The workspace's workflows in list order (oldest first)."""
        with self._lock:
            return [self._workflow_sids[k[1]] for k in self._workflow_index[workspace_sid]]

    def call(self, sid: str) -> CallView:
        with self._lock:
            return self._calls[sid].view()

    def conference(self, sid: str) -> ConferenceView:
        with self._lock:
            return self._conferences[sid].view()

    def interaction_channel(self, interaction_sid: str, channel_sid: str) -> InteractionChannelView:
        with self._lock:
            return self._channel(interaction_sid, channel_sid).view()

    def conversation(self, sid: str) -> ConversationView:
        with self._lock:
            return self._conversations[sid].view()

    @property
    def flex_writes(self) -> list[FlexWrite]:
        """Every successful write through the Flex Interactions API, in order."""
        with self._lock:
            return list(self._flex_writes)

    @property
    def request_log(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    def clear_request_log(self) -> None:
        with self._lock:
            self._log.clear()

    @property
    def mutations(self) -> list[Mutation]:
        with self._lock:
            return list(self._mutations)

    @property
    def platform_events(self) -> list[PlatformEvent]:
        with self._lock:
            return list(self._events)

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        """Swap the knobs at runtime; the fault RNG restarts from ``faults.seed``."""
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
            self._server_errors = 0
            self._requests_since_faults = 0
            self._faults_set_at = time.monotonic()

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = {
                kind: self._stats.get(kind, 0)
                for kind in (
                    "list_task_queues",
                    "list_workflows",
                    "list_tasks",
                    "fetch_task",
                    "update_task",
                    "fetch_call",
                    "list_workspaces",
                    "fetch_workspace",
                    "fetch_account",
                    *_FLEX_REQUEST_KINDS,
                    "other",
                    "429",
                    "5xx",
                    "dropped",
                )
            }
            out["requests"] = sum(self._stats.get(k, 0) for k in _REQUEST_KINDS)
            out["max_in_flight"] = self._max_in_flight
            return out

    def state_json(self) -> JSON:
        """Everything the admin endpoint exposes (no credentials)."""
        with self._lock:
            tasks = [
                {
                    "sid": t.sid,
                    "workspace_sid": t.workspace_sid,
                    "status": t.status,
                    "reason": t.reason,
                    "channel": t.channel,
                    "attributes": t.attributes,
                    "revision": t.revision,
                    "history": [
                        {
                            "at": render.iso(c.at),
                            "before": c.before,
                            "after": c.after,
                            "by": c.by,
                            "reason": c.reason,
                        }
                        for c in t.history
                    ],
                }
                for t in self._tasks.values()
            ]
            calls = [
                {
                    "sid": c.sid,
                    "status": c.status,
                    "end_time": None if c.end_time is None else render.iso(c.end_time),
                }
                for c in self._calls.values()
            ]
            mutations = [
                {
                    "seq": m.seq,
                    "task_sid": m.task_sid,
                    "before_status": m.before_status,
                    "after_status": m.after_status,
                    "reason": m.reason,
                    "before_revision": m.before_revision,
                    "call_status_at_write": m.call_status_at_write,
                    "call_end_at_write": None
                    if m.call_end_at_write is None
                    else render.iso(m.call_end_at_write),
                    "channel": m.channel,
                    "at": render.iso(m.at),
                    "is_conversation_task": m.is_conversation_task,
                }
                for m in self._mutations
            ]
            conferences = [
                {"sid": c.sid, "friendly_name": c.friendly_name, "status": c.status}
                for c in self._conferences.values()
            ]
            channels = [
                {
                    "sid": ch.sid,
                    "interaction_sid": ch.interaction_sid,
                    "status": ch.status,
                    "task_sids": list(ch.task_sids),
                    "participants": [
                        {"sid": p.sid, "type": p.type, "status": p.status, "task_sid": p.task_sid}
                        for p in ch.participants.values()
                    ],
                }
                for ch in self._channels.values()
            ]
            conversations = [{"sid": c.sid, "state": c.state} for c in self._conversations.values()]
            queues = [
                {"sid": q.sid, "workspace_sid": q.workspace_sid, "friendly_name": q.friendly_name}
                for q in self._queue_sids.values()
            ]
            workflows = [
                {"sid": w.sid, "workspace_sid": w.workspace_sid, "friendly_name": w.friendly_name}
                for w in self._workflow_sids.values()
            ]
            flex_writes = [
                {
                    "seq": w.seq,
                    "route": w.route,
                    "interaction_sid": w.interaction_sid,
                    "channel_sid": w.channel_sid,
                    "participant_sid": w.participant_sid,
                    "form": w.form,
                    "before_channel_status": w.before_channel_status,
                    "after_channel_status": w.after_channel_status,
                    "task_changes": [
                        {"task_sid": c.task_sid, "before": c.before, "after": c.after}
                        for c in w.task_changes
                    ],
                    "at": render.iso(w.at),
                }
                for w in self._flex_writes
            ]
            events = [
                {
                    "kind": e.kind,
                    "task_sid": e.task_sid,
                    "call_sid": e.call_sid,
                    "at": render.iso(e.at),
                }
                for e in self._events
            ]
        return {
            "tasks": tasks,
            "calls": calls,
            "mutations": mutations,
            "platform_events": events,
            "conferences": conferences,
            "interaction_channels": channels,
            "conversations": conversations,
            "flex_writes": flex_writes,
            "task_queues": queues,
            "workflows": workflows,
            "stats": self.stats(),
        }

    # ----------------------------------------------------------------- platform events

    def _set_status(
        self, t: TaskRecord, new: str, *, by: str, reason: str | None, now: datetime
    ) -> None:
        self._index_remove(t)
        t.history.append(Change(now, t.status, new, by, reason))
        t.status = new
        self._index_add(t)
        if new in CLOSED_TASK_STATUSES:
            t.reason = reason
            t.closed_at = now

    def _bump(self, t: TaskRecord, now: datetime) -> None:
        t.revision += 1
        t.date_updated = now

    def _platform_task_change(self, task_sid: str, allowed: Mapping[str, str], kind: str) -> None:
        now = self._clock()
        with self._lock:
            t = self._tasks[task_sid]
            if t.status not in allowed:
                raise ValueError(f"{kind}: task {task_sid} is {t.status}")
            self._apply_platform_change(t, allowed[t.status], kind, now)

    def _apply_platform_change(self, t: TaskRecord, new: str, kind: str, now: datetime) -> None:
        reason = None
        if new == "canceled":
            reason = "Task TTL Exceeded"
        elif new == "completed":
            reason = "Task completed by agent"
        self._set_status(t, new, by="platform", reason=reason, now=now)
        self._bump(t, now)
        self._events.append(PlatformEvent(kind, t.sid, None, now))

    def platform_wrap(self, task_sid: str) -> None:
        """The agent's call ended: an assigned task moves to wrapping."""
        self._platform_task_change(task_sid, {"assigned": "wrapping"}, "wrap")

    def platform_close(self, task_sid: str) -> None:
        """TTL or agent: pending/reserved → canceled, assigned/wrapping → completed."""
        allowed = {
            "pending": "canceled",
            "reserved": "canceled",
            "assigned": "completed",
            "wrapping": "completed",
        }
        self._platform_task_change(task_sid, allowed, "platform_close")

    def platform_accept(self, task_sid: str) -> None:
        """An agent accepts the reservation: reserved → assigned."""
        self._platform_task_change(task_sid, {"reserved": "assigned"}, "accept")

    def platform_new_task(self, workspace_sid: str) -> str:
        """A new inbound call arrives and creates a pending voice task."""
        with self._lock:
            account_sid = self._workspaces[workspace_sid].account_sid
            n = self._rng.randrange(10**7)
        to = "+15555550100"
        from_ = f"+1678{n:07d}"
        call_sid = self.add_call(
            account_sid, "in-progress", started_ago=timedelta(0), to=to, from_=from_
        )
        attrs = {
            "from_country": "US",
            "called": to,
            "call_sid": call_sid,
            "from": from_,
            "to": to,
            "direction": "inbound",
        }
        task_sid = self.add_task(workspace_sid, "pending", "voice", attrs, age=timedelta(0))
        with self._lock:
            self._events.append(PlatformEvent("new_task", task_sid, call_sid, self._clock()))
        return task_sid

    def end_call(self, call_sid: str, status: str = "completed") -> None:
        """A live call ends now."""
        now = self._clock()
        with self._lock:
            self._end_call_locked(self._calls[call_sid], status, now)

    def break_call(self, call_sid: str) -> None:
        """Make every fetch of this call answer 500 (code 20500) until ``repair_call``."""
        with self._lock:
            if call_sid not in self._calls:
                raise KeyError(call_sid)
            self._broken_calls.add(call_sid)

    def repair_call(self, call_sid: str) -> None:
        with self._lock:
            self._broken_calls.discard(call_sid)

    def end_conference(self, sid: str) -> None:
        """A live conference ends now (its last participant left)."""
        now = self._clock()
        with self._lock:
            self._end_conference_locked(self._conferences[sid], now)

    def _end_conference_locked(self, c: ConferenceRecord, now: datetime) -> None:
        if c.status == "completed":
            raise ValueError(f"conference {c.sid} already completed")
        c.status = "completed"
        c.date_updated = now
        c.reason_conference_ended = "last-participant-left"
        c.call_sid_ending_conference = next(iter(c.participants.values()), None)
        self._events.append(PlatformEvent("conference_end", None, None, now))

    def close_conversation(self, sid: str) -> None:
        """The conversation closes now (e.g. its close timer fired)."""
        now = self._clock()
        with self._lock:
            c = self._conversations[sid]
            if c.state == "closed":
                raise ValueError(f"conversation {sid} already closed")
            c.state = "closed"
            c.date_updated = now

    def set_channel_status(self, interaction_sid: str, channel_sid: str, status: str) -> None:
        """Set a channel's status with no other effect (test set-up)."""
        if status not in CHANNEL_STATUSES:
            raise ValueError(f"unknown channel status {status!r}")
        with self._lock:
            self._channel(interaction_sid, channel_sid).status = status

    def platform_close_channel(self, interaction_sid: str, channel_sid: str) -> None:
        """The platform closes a channel (customer left, inactivity): tasks go to wrapping."""
        now = self._clock()
        with self._lock:
            ch = self._channel(interaction_sid, channel_sid)
            if ch.status in _NOT_OPEN_CHANNEL_STATUSES:
                raise ValueError(f"channel {channel_sid} is {ch.status}")
            self._platform_close_channel_locked(ch, now)

    def _platform_close_channel_locked(self, ch: ChannelRecord, now: datetime) -> None:
        self._close_channel_locked(ch, "closed", close_tasks=False, now=now)
        task_sid = ch.task_sids[0] if ch.task_sids else None
        self._events.append(PlatformEvent("channel_close", task_sid, None, now))

    def _channel(self, interaction_sid: str, channel_sid: str) -> ChannelRecord:
        ch = self._channels[channel_sid]
        if ch.interaction_sid != interaction_sid:
            raise KeyError(channel_sid)
        return ch

    def _flex_task_change(
        self, task_sid: str | None, new: str, reason: str | None, now: datetime
    ) -> TaskChange | None:
        """Move a task as the Interactions API does (recorded as a platform change)."""
        t = self._tasks.get(task_sid) if task_sid is not None else None
        if t is None or t.status == new or t.status in CLOSED_TASK_STATUSES:
            return None
        before = t.status
        self._set_status(t, new, by="platform", reason=reason, now=now)
        self._bump(t, now)
        return TaskChange(t.sid, before, new)

    def _close_channel_locked(
        self, ch: ChannelRecord, status: str, *, close_tasks: bool, now: datetime
    ) -> list[TaskChange]:
        changes: list[TaskChange] = []
        for task_sid in ch.task_sids:
            t = self._tasks.get(task_sid)
            if t is None:
                continue
            if close_tasks:
                new = "completed" if t.status in ("assigned", "wrapping") else "canceled"
                change = self._flex_task_change(task_sid, new, "Interaction channel closed", now)
            elif t.status == "assigned":
                change = self._flex_task_change(task_sid, "wrapping", None, now)
            else:
                # "if not specified, all tasks will be set to wrapping" -- TaskRouter has no
                # pending/reserved -> wrapping transition, and what Twilio does with such tasks
                # is undocumented: we leave them open (stricter: only Routing closes them).
                change = None
            if change is not None:
                changes.append(change)
        for p in ch.participants.values():
            if p.status == "closed":
                continue
            if p.type == "agent":
                p.status = "closed" if close_tasks else "wrapup"
            elif status == "closed":
                p.status = "closed"
        ch.status = status
        conv = self._conversations.get(ch.conversation_sid or "")
        if status == "closed" and conv is not None and conv.state != "closed":
            # [M] closing the interaction channel also closes its conversation.
            conv.state = "closed"
            conv.date_updated = now
        return changes

    def _end_call_locked(self, c: CallRecord, status: str, now: datetime) -> None:
        if c.status not in LIVE_CALL_STATUSES:
            raise ValueError(f"call {c.sid} already ended ({c.status})")
        if status not in CALL_STATUSES or status in LIVE_CALL_STATUSES:
            raise ValueError(f"not a terminal call status: {status!r}")
        if status == "completed":
            if c.start_time is None:
                c.start_time = now
            c.end_time = now
        c.status = status
        c.date_updated = now
        self._live_remove(c.sid)
        self._events.append(PlatformEvent("call_end", None, c.sid, now))

    def _random_task(self, statuses: Sequence[str], *, voice_only: bool) -> TaskRecord | None:
        lists = [idx[s] for idx in self._index.values() for s in statuses if idx[s]]
        total = sum(len(lst) for lst in lists)
        if total == 0:
            return None
        for _ in range(16):
            i = self._rng.randrange(total)
            for lst in lists:
                if i < len(lst):
                    t = self._tasks[lst[i][1]]
                    break
                i -= len(lst)
            if not voice_only or t.channel == "voice":
                return t
        for lst in lists:
            for key in lst:
                t = self._tasks[key[1]]
                if t.channel == "voice":
                    return t
        return None

    def maybe_platform_event(self) -> None:
        """With probability ``platform_event_rate``, apply one random platform event."""
        faults = self._faults
        if faults.platform_event_rate <= 0 or not faults.platform_event_kinds:
            return
        with self._lock:
            if self._rng.random() >= faults.platform_event_rate:
                return
            kind = self._rng.choice(faults.platform_event_kinds)
            now = self._clock()
            if kind == "wrap":
                t = self._random_task(("assigned",), voice_only=True)
                if t is not None:
                    self._apply_platform_change(t, "wrapping", kind, now)
                return
            if kind == "platform_close":
                t = self._random_task(("pending", "reserved", "assigned"), voice_only=False)
                if t is not None:
                    new = "completed" if t.status == "assigned" else "canceled"
                    self._apply_platform_change(t, new, kind, now)
                return
            if kind == "accept":
                t = self._random_task(("reserved",), voice_only=False)
                if t is not None:
                    self._apply_platform_change(t, "assigned", kind, now)
                return
            if kind == "call_end":
                if self._live_calls:
                    sid = self._rng.choice(self._live_calls)
                    self._end_call_locked(self._calls[sid], "completed", now)
                return
            if kind == "channel_close":
                open_channels = sorted(
                    sid for sid, ch in self._channels.items() if ch.status == "active"
                )
                if open_channels:
                    ch = self._channels[self._rng.choice(open_channels)]
                    self._platform_close_channel_locked(ch, now)
                return
            if kind == "conference_end":
                live = sorted(s for s, c in self._conferences.items() if c.status != "completed")
                if live:
                    self._end_conference_locked(self._conferences[self._rng.choice(live)], now)
                return
            if not self._workspaces:
                return
            ws_sid = self._rng.choice(sorted(self._workspaces))
        self.platform_new_task(ws_sid)

    # ----------------------------------------------------------------- request bookkeeping

    def authenticate(self, username: str, password: str) -> str | None:
        """The caller's account SID, or None. Constant-time comparison of secrets."""
        principal = self.principal(username, password)
        return None if principal is None else principal.account_sid

    def principal(self, username: str, password: str) -> Principal | None:
        """Whom these credentials name (account, region, key kind), or None."""
        with self._lock:
            acct = self._accounts.get(username)
            if acct is not None:
                ok = hmac.compare_digest(acct.auth_token.encode(), password.encode())
                return Principal(acct.sid, acct.region, "token") if ok else None
            key = self._keys.get(username)
            if key is not None and hmac.compare_digest(key.secret.encode(), password.encode()):
                region = self._accounts[key.account_sid].region
                return Principal(key.account_sid, region, key.kind, frozenset(key.permissions))
        return None

    def throttled_now(self) -> bool:
        """Whether ``faults.throttle_seconds`` since the faults were set have not yet passed."""
        seconds = self._faults.throttle_seconds
        return seconds > 0 and time.monotonic() < self._faults_set_at + seconds

    def revoked_on_this_request(self) -> bool:
        """Count one Twilio-route request; True once ``faults.revoke_after`` requests were
        answered since the faults were set (every credential is revoked from then on)."""
        with self._lock:
            self._requests_since_faults += 1
            limit = self._faults.revoke_after
            return limit is not None and self._requests_since_faults > limit

    def next_seq(self) -> int:
        return next(self._seq)

    def enter(self, account_sid: str) -> int:
        with self._lock:
            n = self._in_flight.get(account_sid, 0) + 1
            self._in_flight[account_sid] = n
            self._max_in_flight = max(self._max_in_flight, n)
            return n

    def leave(self, account_sid: str) -> None:
        with self._lock:
            self._in_flight[account_sid] -= 1

    def in_flight(self, account_sid: str) -> int:
        with self._lock:
            return self._in_flight.get(account_sid, 0)

    def count(self, *kinds: str) -> None:
        with self._lock:
            for kind in kinds:
                self._stats[kind] += 1

    def log_request(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def rand(self) -> float:
        return self._rng.random()

    def next_server_error(self) -> int:
        """20500 and 20503 alternately (restarting at 20500 whenever faults are set)."""
        with self._lock:
            self._server_errors += 1
            return 20500 if self._server_errors % 2 else 20503

    # ----------------------------------------------------------------- API operations

    def _visible(self, t: TaskRecord, now: datetime) -> bool:
        if t.closed_at is None:
            return True
        return (now - t.closed_at).total_seconds() <= self._faults.closed_task_ttl

    def _workspace_for(self, account_sid: str, ws_sid: str) -> Workspace:
        ws = self._workspaces.get(ws_sid)
        if ws is None or ws.account_sid != account_sid:
            raise not_found()
        return ws

    def _task_for(self, account_sid: str, ws_sid: str, task_sid: str, now: datetime) -> TaskRecord:
        self._workspace_for(account_sid, ws_sid)
        t = self._tasks.get(task_sid)
        if t is None or t.workspace_sid != ws_sid or not self._visible(t, now):
            raise not_found()
        return t

    def api_fetch_account(self, account_sid: str, path_account: str) -> JSON:
        _own_account(account_sid, path_account)
        with self._lock:
            return render.account_json(self._accounts[account_sid])

    def api_fetch_call(self, account_sid: str, path_account: str, call_sid: str) -> JSON:
        _own_account(account_sid, path_account)
        with self._lock:
            c = self._calls.get(call_sid)
            if c is None or c.account_sid != account_sid:
                raise not_found()
            if call_sid in self._broken_calls:
                raise ApiError(500, 20500)
            return render.call_json(c)

    def api_fetch_workspace(self, account_sid: str, ws_sid: str, base: str) -> JSON:
        with self._lock:
            return render.workspace_json(self._workspace_for(account_sid, ws_sid), base)

    def api_list_workspaces(
        self, account_sid: str, base: str, path: str, query: Mapping[str, list[str]]
    ) -> JSON:
        paging = _paging(query)
        name = _single(query, "FriendlyName")
        with self._lock:
            lst = self._ws_index[account_sid]

            def keep(key: Key) -> bool:
                return name is None or self._workspaces[key[1]].friendly_name == name

            result = _page_keys([lst], paging, paging.page_size, keep)
            items = [render.workspace_json(self._workspaces[k[1]], base) for k in result.keys]
        filters = [(k, v) for k, vs in query.items() if k not in _PAGING_PARAMS for v in vs]
        meta = _meta("workspaces", base + path, filters, paging, result)
        return {"workspaces": items, "meta": meta}

    def api_list_tasks(
        self,
        account_sid: str,
        ws_sid: str,
        base: str,
        path: str,
        query: Mapping[str, list[str]],
    ) -> JSON:
        ordering = _single(query, "Ordering") or "DateCreated:asc"
        if ordering not in ("DateCreated:asc", "DateCreated:desc"):
            raise ApiError(400, 20001, f"Ordering {ordering!r} is not supported by the emulator")
        paging = _paging(query, ascending=ordering == "DateCreated:asc")
        served_size = paging.page_size
        if self._faults.max_page_size is not None:
            served_size = min(served_size, self._faults.max_page_size)
        statuses = _statuses(query)
        for unsupported in ("EvaluateTaskAttributes",):
            if unsupported in query:
                raise ApiError(400, 20001, f"{unsupported} is not supported by the emulator")
        checks = _task_filters(query)
        now = self._clock()
        with self._lock:
            self._workspace_for(account_sid, ws_sid)
            index = self._index[ws_sid]
            lists = [index[s] for s in statuses]
            tasks = self._tasks

            def keep(key: Key) -> bool:
                t = tasks[key[1]]
                return self._visible(t, now) and all(check(t) for check in checks)

            result = _page_keys(lists, paging, served_size, keep)
            full = self._faults.list_attributes
            items = [render.task_json(tasks[k[1]], base, now, full=full) for k in result.keys]
        filters = [(k, v) for k, vs in query.items() if k not in _PAGING_PARAMS for v in vs]
        meta = _meta("tasks", base + path, filters, paging, result, served_size=served_size)
        return {"tasks": items, "meta": meta}

    def api_list_task_queues(
        self, account_sid: str, ws_sid: str, base: str, path: str, query: Mapping[str, list[str]]
    ) -> JSON:
        for unsupported in ("EvaluateWorkerAttributes", "Ordering"):
            if unsupported in query:
                raise ApiError(400, 20001, f"{unsupported} is not supported by the emulator")
        # The emulator has no Workers, so no queue has the Worker a WorkerSid filter names.
        no_worker = _single(query, "WorkerSid") is not None
        return self._list_named(
            "task_queues",
            account_sid,
            ws_sid,
            base,
            path,
            query,
            render.task_queue_json,
            match_none=no_worker,
        )

    def api_list_workflows(
        self, account_sid: str, ws_sid: str, base: str, path: str, query: Mapping[str, list[str]]
    ) -> JSON:
        return self._list_named(
            "workflows", account_sid, ws_sid, base, path, query, render.workflow_json
        )

    def _list_named(
        self,
        key: str,
        account_sid: str,
        ws_sid: str,
        base: str,
        path: str,
        query: Mapping[str, list[str]],
        to_json: Callable[[Any, str], JSON],
        *,
        match_none: bool = False,
    ) -> JSON:
        """A page of the workspace's TaskQueues or Workflows, oldest first (keyset paging and
        ``max_page_size`` as for tasks). ``FriendlyName`` matches exactly, case and all:
        Twilio does not say whether its filter folds case, and exact is the stricter reading."""
        paging = _paging(query)
        served_size = paging.page_size
        if self._faults.max_page_size is not None:
            served_size = min(served_size, self._faults.max_page_size)
        name = _single(query, "FriendlyName")
        records: Mapping[str, TaskQueue | Workflow]
        with self._lock:
            self._workspace_for(account_sid, ws_sid)
            if key == "task_queues":
                index, records = self._queue_index[ws_sid], self._queue_sids
            else:
                index, records = self._workflow_index[ws_sid], self._workflow_sids

            def keep(k: Key) -> bool:
                return not match_none and (name is None or records[k[1]].friendly_name == name)

            result = _page_keys([index], paging, served_size, keep)
            items = [to_json(records[k[1]], base) for k in result.keys]
        filters = [(k, v) for k, vs in query.items() if k not in _PAGING_PARAMS for v in vs]
        meta = _meta(key, base + path, filters, paging, result, served_size=served_size)
        return {key: items, "meta": meta}

    def api_fetch_task(
        self, account_sid: str, ws_sid: str, task_sid: str, base: str
    ) -> tuple[JSON, str]:
        now = self._clock()
        with self._lock:
            t = self._task_for(account_sid, ws_sid, task_sid, now)
            return render.task_json(t, base, now, full=True), str(t.revision)

    def api_update_task(
        self,
        account_sid: str,
        ws_sid: str,
        task_sid: str,
        base: str,
        form: Mapping[str, str],
        if_match: str | None,
    ) -> tuple[JSON, str]:
        unknown = set(form) - _UPDATE_FIELDS
        if unknown:
            # Undocumented: Twilio may ignore or support other fields (TaskChannel,
            # VirtualStartTime); we reject them so unexpected writes surface.
            raise ApiError(400, 20001, f"Unsupported parameter(s): {', '.join(sorted(unknown))}")
        new_status = form.get("AssignmentStatus")
        reason = form.get("Reason")
        attributes = form.get("Attributes")
        priority = _priority(form.get("Priority"))
        if new_status is not None and new_status not in TASK_STATUSES:
            raise ApiError(400, 20001, f"Invalid AssignmentStatus: {new_status}")
        closing = new_status in CLOSED_TASK_STATUSES
        if closing and not reason:
            # Spec: Reason "is required only if the Task is canceled or completed". The error
            # code is undocumented; we choose 400/20001 like other invalid updates.
            raise ApiError(400, 20001, "Reason is required when canceling or completing a task")
        if reason is not None and not closing:
            # Undocumented: Reason without canceling/completing is rejected (stricter).
            raise ApiError(
                400, 20001, "Reason is only accepted when canceling or completing a task"
            )
        if attributes is not None:
            _check_attributes(attributes)
            if new_status in ("wrapping", "completed"):
                # DOC-TASK: status and attributes changes need two separate requests.
                raise ApiError(
                    400,
                    20001,
                    "Attributes cannot be updated in the same request that moves a task to "
                    "wrapping or completed",
                )
        now = self._clock()
        with self._lock:
            t = self._task_for(account_sid, ws_sid, task_sid, now)
            if if_match is not None and if_match != str(t.revision):
                # The ETag is the bare revision number; If-Match must equal it byte for byte
                # ("*" and quoted forms are not special-cased: stricter).
                raise ApiError(412, 20412, "Precondition Failed")
            before_status, before_revision = t.status, t.revision
            conversation_task = _is_conversation_task(t.attributes)
            if new_status is not None and (t.status, new_status) not in API_TRANSITIONS:
                template = _TRANSITION_ERRORS[new_status]
                raise ApiError(400, 20001, template.format(t=t.sid, w=ws_sid, a=account_sid))
            if new_status is not None:
                self._set_status(t, new_status, by="api", reason=reason, now=now)
            if attributes is not None:
                t.attributes = attributes
            if priority is not None:
                t.priority = priority
            self._bump(t, now)
            call_status, call_end = self._call_state_for(t)
            self._mutations.append(
                Mutation(
                    seq=len(self._mutations) + 1,
                    task_sid=t.sid,
                    before_status=before_status,
                    after_status=t.status,
                    reason=reason,
                    before_revision=before_revision,
                    call_status_at_write=call_status,
                    call_end_at_write=call_end,
                    channel=t.channel,
                    at=now,
                    is_conversation_task=conversation_task,
                )
            )
            return render.task_json(t, base, now, full=True), str(t.revision)

    def _call_state_for(self, t: TaskRecord) -> tuple[str | None, datetime | None]:
        try:
            attrs = _strict_json(t.attributes)
        except ValueError:
            return None, None
        call_sid = attrs.get("call_sid") if isinstance(attrs, dict) else None
        c = self._calls.get(call_sid) if isinstance(call_sid, str) else None
        if c is None or c.account_sid != t.account_sid:
            return None, None
        return c.status, c.end_time or c.date_updated

    # ----------------------------------------------------------------- conferences, Flex, Conversations

    def api_fetch_conference(self, account_sid: str, path_account: str, conf_sid: str) -> JSON:
        _own_account(account_sid, path_account)
        with self._lock:
            c = self._conferences.get(conf_sid)
            if c is None or c.account_sid != account_sid:
                raise not_found()
            return render.conference_json(c)

    def api_list_conferences(
        self, account_sid: str, path_account: str, path: str, query: Mapping[str, list[str]]
    ) -> JSON:
        _own_account(account_sid, path_account)
        for name in query:
            if name.startswith(("DateCreated", "DateUpdated")):
                raise ApiError(400, 20001, f"{name} is not supported by the emulator")
        # v2010 lists are newest first.
        paging = _paging(query, ascending=False)
        friendly_name = _single(query, "FriendlyName")
        status = _single(query, "Status")
        if status is not None and status not in CONFERENCE_STATUSES:
            raise ApiError(400, 20001, f"Invalid Status: {status}")
        with self._lock:
            if friendly_name is not None:
                lst = self._conf_by_name.get((account_sid, friendly_name), [])
            else:
                lst = self._conf_index.get(account_sid, [])
            conferences = self._conferences

            # Twilio changelog 2026-06-10 (rollout moved to 2026-09-30 on 2026-07-08): without
            # Status the list returns in-progress conferences only; ended ones need
            # Status=completed (TWILIO_FACTS §0). That init is in no default is [M]: we choose
            # the stricter reading.
            wanted = status or "in-progress"

            def keep(key: Key) -> bool:
                return conferences[key[1]].status == wanted

            result = _page_keys([lst], paging, paging.page_size, keep)
            items = [render.conference_json(conferences[k[1]]) for k in result.keys]
        filters = [(k, v) for k, vs in query.items() if k not in _PAGING_PARAMS for v in vs]
        page = _v2010_page(path, filters, paging, result)
        page["conferences"] = items
        return page

    def _channel_for(self, account_sid: str, kd: str, uo: str) -> ChannelRecord:
        ch = self._channels.get(uo)
        if ch is None or ch.interaction_sid != kd or ch.account_sid != account_sid:
            raise not_found()
        return ch

    def api_fetch_interaction_channel(self, account_sid: str, kd: str, uo: str, base: str) -> JSON:
        with self._lock:
            return render.interaction_channel_json(self._channel_for(account_sid, kd, uo), base)

    def api_update_interaction_channel(
        self, account_sid: str, kd: str, uo: str, base: str, form: Mapping[str, str]
    ) -> JSON:
        _reject_unknown(form, {"Status", "Routing"})
        status = form.get("Status")
        if status is None:
            raise ApiError(400, 20001, "Missing required parameter Status in the post body")
        if status not in ("closed", "inactive"):
            raise ApiError(400, 20001, f"Invalid Status: {status}")
        close_tasks = form.get("Routing") is not None and _routing_closed(form["Routing"])
        if status == "inactive" and not close_tasks:
            raise ApiError(400, 20001, "Routing is required when Status is inactive")
        now = self._clock()
        with self._lock:
            ch = self._channel_for(account_sid, kd, uo)
            if ch.status in _NOT_OPEN_CHANNEL_STATUSES and not self._closes_leftovers(
                ch, status, close_tasks=close_tasks
            ):
                # Error 80906 is documented for completing an already-closed interaction; the
                # same answer for a failed channel and for a repeated close is our (stricter)
                # choice -- a client must check the status first.
                raise ApiError(400, 80906, f"Interaction Not Open: channel {uo} is {ch.status}")
            if ch.status == "inactive" and status == "inactive":
                raise ApiError(400, 20001, f"Channel {uo} is already inactive")
            before = ch.status
            changes = self._close_channel_locked(ch, status, close_tasks=close_tasks, now=now)
            self._record_flex_write(
                "update_interaction_channel", ch, None, form, before, changes, now
            )
            return render.interaction_channel_json(ch, base)

    def _closes_leftovers(self, ch: ChannelRecord, status: str, *, close_tasks: bool) -> bool:
        """With ``closed_channel_close="accept"``: Status=closed with Routing closed on a
        closed channel whose tasks are still open is accepted and closes those tasks."""
        if self._faults.closed_channel_close != "accept":
            return False
        if ch.status != "closed" or status != "closed" or not close_tasks:
            return False
        return any(
            t is not None and t.status not in CLOSED_TASK_STATUSES
            for t in (self._tasks.get(sid) for sid in ch.task_sids)
        )

    def api_list_interaction_participants(
        self,
        account_sid: str,
        kd: str,
        uo: str,
        base: str,
        path: str,
        query: Mapping[str, list[str]],
    ) -> JSON:
        paging = _paging(query)
        with self._lock:
            ch = self._channel_for(account_sid, kd, uo)
            result = _page_keys([ch.participant_keys], paging, paging.page_size, lambda k: True)
            items = [
                render.interaction_participant_json(ch.participants[k[1]], base)
                for k in result.keys
            ]
        filters = [(k, v) for k, vs in query.items() if k not in _PAGING_PARAMS for v in vs]
        meta = _meta("participants", base + path, filters, paging, result)
        return {"participants": items, "meta": meta}

    def api_update_interaction_participant(
        self, account_sid: str, kd: str, uo: str, ut: str, base: str, form: Mapping[str, str]
    ) -> JSON:
        _reject_unknown(form, {"Status"})
        status = form.get("Status")
        if status is None:
            raise ApiError(400, 20001, "Missing required parameter Status in the post body")
        if status not in ("closed", "wrapup"):
            raise ApiError(400, 20001, f"Invalid Status: {status}")
        now = self._clock()
        with self._lock:
            ch = self._channel_for(account_sid, kd, uo)
            p = ch.participants.get(ut)
            if p is None:
                raise not_found()
            if p.status == "closed" or p.status == status:
                # Undocumented: repeating a participant update is rejected (stricter).
                raise ApiError(400, 20001, f"Participant {ut} is already {p.status}")
            changes: list[TaskChange] = []
            p.status = status
            t = self._tasks.get(p.task_sid) if p.task_sid is not None else None
            if t is not None and status == "closed":
                # Park-an-interaction doc: "the associated task is completed but the channel
                # ... remains active". A not-yet-accepted task cannot complete; it is canceled.
                new = "completed" if t.status in ("assigned", "wrapping") else "canceled"
                change = self._flex_task_change(t.sid, new, "Participant closed", now)
                changes += [change] if change is not None else []
            elif t is not None and t.status == "assigned":
                change = self._flex_task_change(t.sid, "wrapping", None, now)
                changes += [change] if change is not None else []
            self._record_flex_write(
                "update_interaction_participant", ch, ut, form, ch.status, changes, now
            )
            return render.interaction_participant_json(p, base)

    def _record_flex_write(
        self,
        route: str,
        ch: ChannelRecord,
        participant_sid: str | None,
        form: Mapping[str, str],
        before: str,
        changes: list[TaskChange],
        now: datetime,
    ) -> None:
        self._flex_writes.append(
            FlexWrite(
                seq=len(self._flex_writes) + 1,
                route=route,
                interaction_sid=ch.interaction_sid,
                channel_sid=ch.sid,
                participant_sid=participant_sid,
                form=dict(form),
                before_channel_status=before,
                after_channel_status=ch.status,
                task_changes=tuple(changes),
                at=now,
            )
        )

    def api_fetch_conversation(self, account_sid: str, conv_sid: str, base: str) -> JSON:
        with self._lock:
            c = self._conversations.get(conv_sid)
            if c is None or c.account_sid != account_sid:
                # The path may also hold a unique_name; the emulator never sets one.
                raise not_found()
            return render.conversation_json(c, base)


_FLEX_REQUEST_KINDS = (
    "fetch_conference",
    "list_conferences",
    "fetch_interaction_channel",
    "update_interaction_channel",
    "list_interaction_participants",
    "update_interaction_participant",
    "fetch_conversation",
)
_REQUEST_KINDS = (
    "list_task_queues",
    "list_workflows",
    "list_tasks",
    "fetch_task",
    "update_task",
    "fetch_call",
    "list_workspaces",
    "fetch_workspace",
    "fetch_account",
    *_FLEX_REQUEST_KINDS,
    "other",
)


def _strict_json(raw: str) -> Any:
    """JSON as RFC 8259 has it: NaN/Infinity are refused, and so is nesting too deep to parse
    (Python's json would raise RecursionError: never a 500)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(raw, parse_constant=refuse)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _int(raw: str) -> int:
    """An integer written in ASCII digits with an optional minus (int() would also take
    "1_000", " 7" and non-ASCII digits: stricter)."""
    digits = raw[1:] if raw.startswith("-") else raw
    if not digits or not digits.isascii() or not digits.isdigit() or len(digits) > 30:
        raise ValueError(raw)
    return int(raw)


def _is_conversation_task(raw: str) -> bool:
    try:
        attrs = _strict_json(raw)
    except ValueError:
        return False
    return isinstance(attrs, dict) and any(attrs.get(k) for k in _CONVERSATION_KEYS)


def _paging(query: Mapping[str, list[str]], *, ascending: bool = True) -> _Paging:
    raw_size = _single(query, "PageSize")
    page_size = DEFAULT_PAGE_SIZE
    if raw_size is not None:
        try:
            page_size = _int(raw_size)
        except ValueError:
            raise ApiError(400, 20001, f"Invalid PageSize: {raw_size}") from None
        if page_size > MAX_PAGE_SIZE:
            raise ApiError(400, 20007, "Page size too large")
        if page_size < 1:
            raise ApiError(400, 20001, f"Invalid PageSize: {raw_size}")
    raw_page = _single(query, "Page")
    page = 0
    if raw_page is not None:
        try:
            page = _int(raw_page)
        except ValueError:
            raise ApiError(400, 20001, f"Invalid Page: {raw_page}") from None
        if page < 0:
            raise ApiError(400, 20001, f"Invalid Page: {raw_page}")
    token = _single(query, "PageToken")
    if page > 0 and token is None:
        # Undocumented ("Please avoid usage of the page query parameter"): a client building
        # Page=N offsets itself gets an error instead of the first page again (stricter).
        raise ApiError(400, 20001, "Page requires a PageToken; follow meta.next_page_url")
    return _Paging(page_size, page, token, ascending)


def _statuses(query: Mapping[str, list[str]]) -> list[str]:
    wanted: list[str] = []
    for raw in _mapping_list(query, "AssignmentStatus"):
        for value in raw.split(","):
            status = value.strip()
            if status not in TASK_STATUSES:
                raise ApiError(400, 20001, f"Invalid AssignmentStatus: {status}")
            if status not in wanted:
                wanted.append(status)
    return wanted or list(TASK_STATUSES)


def _task_filters(query: Mapping[str, list[str]]) -> list[Callable[[TaskRecord], bool]]:
    checks: list[Callable[[TaskRecord], bool]] = []
    queue_sid = _single(query, "TaskQueueSid")
    if queue_sid is not None:
        checks.append(lambda t: t.queue_sid == queue_sid)
    queue_name = _single(query, "TaskQueueName")
    if queue_name is not None:
        checks.append(lambda t: t.queue == queue_name)
    workflow_sid = _single(query, "WorkflowSid")
    if workflow_sid is not None:
        checks.append(lambda t: t.workflow_sid == workflow_sid)
    workflow_name = _single(query, "WorkflowName")
    if workflow_name is not None:
        checks.append(lambda t: t.workflow == workflow_name)
    raw_priority = _single(query, "Priority")
    if raw_priority is not None:
        try:
            priority = _int(raw_priority)
        except ValueError:
            raise ApiError(400, 20001, f"Invalid Priority: {raw_priority}") from None
        checks.append(lambda t: t.priority == priority)
    if _single(query, "RoutingTarget") is not None:
        checks.append(lambda t: False)  # the emulator never sets routing_target
    has_addons = _single(query, "HasAddons")
    if has_addons is not None and has_addons.lower() == "true":
        checks.append(lambda t: False)  # addons is always "{}"
    return checks


def _priority(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = _int(raw)
    except ValueError:
        raise ApiError(400, 20001, f"Invalid Priority: {raw}") from None
    if not 0 <= value <= 2_147_483_647:
        raise ApiError(400, 20001, f"Invalid Priority: {raw}")
    return value


def _check_attributes(raw: str) -> None:
    try:
        value = _strict_json(raw)
    except ValueError:
        raise ApiError(400, 20001, "Attributes must be a valid JSON object") from None
    if not isinstance(value, dict):
        # Undocumented: non-object JSON is rejected (stricter).
        raise ApiError(400, 20001, "Attributes must be a valid JSON object")


def _take(it: Iterator[Key], keep: Callable[[Key], bool], n: int) -> list[Key]:
    out: list[Key] = []
    if n <= 0:
        return out
    for key in it:
        if keep(key):
            out.append(key)
            if len(out) >= n:
                break
    return out


@dataclass(frozen=True)
class _Paging:
    page_size: int
    page: int
    token: str | None
    ascending: bool = True


@dataclass(frozen=True)
class _PageKeys:
    keys: list[Key]
    has_prev: bool
    has_next: bool


def _page_keys(
    lists: Sequence[list[Key]], paging: _Paging, size: int, keep: Callable[[Key], bool]
) -> _PageKeys:
    """One keyset page: keys in display order, and whether pages exist before and after it."""
    token, ascending = paging.token, paging.ascending
    if token is None:
        keys = _take(_iter_sorted(lists, None, ascending=ascending), keep, size)
    else:
        kind, bound = _decode_token(token, ascending=ascending)
        if kind == "n":
            keys = _take(_iter_sorted(lists, bound, ascending=ascending), keep, size)
        else:
            keys = _take(_iter_sorted(lists, bound, ascending=not ascending), keep, size)
            keys.reverse()
    if not keys:
        return _PageKeys(keys, has_prev=False, has_next=False)
    has_next = bool(_take(_iter_sorted(lists, keys[-1], ascending=ascending), keep, 1))
    has_prev = bool(_take(_iter_sorted(lists, keys[0], ascending=not ascending), keep, 1))
    return _PageKeys(keys, has_prev=has_prev, has_next=has_next)


def _meta(
    key: str,
    url: str,
    filters: list[tuple[str, str]],
    paging: _Paging,
    result: _PageKeys,
    *,
    served_size: int | None = None,
) -> JSON:
    page_size, page, ascending, keys = paging.page_size, paging.page, paging.ascending, result.keys

    def page_url(page_no: int, page_token: str | None) -> str:
        params = [*filters, ("PageSize", str(page_size)), ("Page", str(page_no))]
        if page_token is not None:
            params.append(("PageToken", page_token))
        return f"{url}?{urlencode(params)}"

    next_url = None
    if result.has_next:
        next_url = page_url(page + 1, _encode_token("n", keys[-1], ascending=ascending))
    prev_url = None
    if result.has_prev and page > 0:
        prev_url = page_url(page - 1, _encode_token("p", keys[0], ascending=ascending))
    return {
        "first_page_url": page_url(0, None),
        "key": key,
        "next_page_url": next_url,
        "page": page,
        "page_size": served_size if served_size is not None else page_size,
        "previous_page_url": prev_url,
        "url": page_url(page, paging.token),
    }


def _reject_unknown(form: Mapping[str, str], allowed: set[str]) -> None:
    unknown = set(form) - allowed
    if unknown:
        # Undocumented: unknown parameters are rejected so unexpected writes surface (stricter).
        raise ApiError(400, 20001, f"Unsupported parameter(s): {', '.join(sorted(unknown))}")


def _routing_closed(raw: str) -> bool:
    """``Routing`` must be a JSON object whose status is "closed" (the only allowed value)."""
    try:
        routing = _strict_json(raw)
    except ValueError:
        raise ApiError(400, 20001, "Routing must be a valid JSON object") from None
    if not isinstance(routing, dict) or routing.get("status") != "closed":
        raise ApiError(400, 20001, 'Routing status must be "closed"')
    return True


def _v2010_page(
    path: str, filters: list[tuple[str, str]], paging: _Paging, result: _PageKeys
) -> JSON:
    """The v2010 list envelope: flat, with URIs relative to the API host."""
    page_size, page, keys = paging.page_size, paging.page, result.keys

    def page_uri(page_no: int, page_token: str | None) -> str:
        params = [*filters, ("PageSize", str(page_size)), ("Page", str(page_no))]
        if page_token is not None:
            params.append(("PageToken", page_token))
        return f"{path}?{urlencode(params)}"

    next_uri = None
    if result.has_next:
        next_uri = page_uri(page + 1, _encode_token("n", keys[-1], ascending=paging.ascending))
    prev_uri = None
    if result.has_prev and page > 0:
        prev_uri = page_uri(page - 1, _encode_token("p", keys[0], ascending=paging.ascending))
    start = page * page_size
    return {
        "end": start + max(0, len(keys) - 1),
        "first_page_uri": page_uri(0, None),
        "next_page_uri": next_uri,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": prev_uri,
        "start": start,
        "uri": page_uri(page, paging.token),
    }
