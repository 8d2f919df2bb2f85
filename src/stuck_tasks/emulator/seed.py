"""A realistic post-outage workspace covering every row of the clean-up decision table."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .emulator import Emulator
from .faults import Faults
from .model import InteractionRefs
from .sids import SidSource

# kind -> verdict a correct clean-up must reach ("not-open": not returned by an open-status list).
_VOICE_VERDICTS: dict[str, str] = {
    "stuck_pending": "cancel",
    "stuck_reserved": "cancel",
    "stuck_assigned": "complete",
    "live_call": "leave",
    "recent_call_end": "leave",
    "missing_call": "leave",
    "no_call_sid": "leave",
    "invalid_json": "leave",
    "json_list": "leave",
    "json_number": "leave",
    "call_sid_not_string": "leave",
    "chat": "leave",
    "sms": "leave",
    "default_channel": "leave",
    "wrapping": "not-open",
    "completed": "not-open",
    "canceled": "not-open",
}
# Seeded only with kinds="all". "close-interaction": close through the Flex Interactions API;
# "complete-wrapping": complete an abandoned wrap-up (only with --include-wrapping, otherwise
# the task is "not-open"). Kinds in _BY_STATUS are "complete" when assigned and "cancel" when
# pending/reserved: SeedReport.expected holds each task's own verdict.
_EXTRA_VERDICTS: dict[str, str] = {
    "outbound_conference_ended": "complete",
    "outbound_conference_live": "leave",
    "conference_by_name_ended": "complete",
    "call_ended_conference_live": "leave",
    "no_call_no_conference": "leave",
    "participants_all_ended": "complete",
    "messaging_channel_closed": "close-interaction",
    "messaging_conversation_closed": "close-interaction",
    "messaging_active": "leave",
    "conversation_task_without_interaction": "leave",
    "legacy_chat": "leave",
    "abandoned_wrapping": "complete-wrapping",
    "recent_wrapping": "not-open",
}
_BY_STATUS = frozenset({"conference_by_name_ended", "participants_all_ended"})
KIND_VERDICTS: dict[str, str] = {**_VOICE_VERDICTS, **_EXTRA_VERDICTS}
VOICE_KINDS: tuple[str, ...] = tuple(_VOICE_VERDICTS)
EXTRA_KINDS: tuple[str, ...] = tuple(_EXTRA_VERDICTS)
_EXTRA_SHARE = 0.1
# Youngest age of a task of each extra kind, so its call/conference history fits.
_EXTRA_MIN_AGE = {
    "outbound_conference_ended": timedelta(minutes=25),
    "conference_by_name_ended": timedelta(minutes=25),
    "participants_all_ended": timedelta(minutes=20),
    "messaging_channel_closed": timedelta(minutes=20),
    "messaging_conversation_closed": timedelta(minutes=20),
    "abandoned_wrapping": timedelta(hours=3, minutes=10),
}
_STUCK_SPLIT = (("stuck_pending", 0.35), ("stuck_reserved", 0.15), ("stuck_assigned", 0.5))
# Order matters: "chat" first so it is never starved when few non-stuck tasks are asked for.
_OTHER_KINDS = tuple(k for k in _VOICE_VERDICTS if not k.startswith("stuck_"))
_OTHER_KINDS = ("chat", *(k for k in _OTHER_KINDS if k != "chat"))
_TERMINAL = ("completed", "busy", "failed", "no-answer", "canceled")
_LIVE = ("queued", "ringing", "in-progress")
_OPEN = ("pending", "reserved", "assigned")
_QUEUES = ("Sales", "Support", "Billing")
_OLDEST = timedelta(hours=4)
_NEWEST = timedelta(minutes=15)


@dataclass(frozen=True)
class SeedReport:
    account_sid: str
    workspace_sid: str
    kinds: dict[str, str]
    expected: dict[str, str]
    call_sids: dict[str, str | None] = field(default_factory=dict)
    conference_sids: dict[str, str] = field(default_factory=dict)
    interactions: dict[str, InteractionRefs] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Number of tasks per kind."""
        return dict(Counter(self.kinds.values()))

    def with_verdict(self, verdict: str) -> list[str]:
        """Task SIDs expected to get ``verdict``, in creation order."""
        return [sid for sid, v in self.expected.items() if v == verdict]


@dataclass(frozen=True)
class SandboxWorld:
    account_sid: str
    auth_token: str = field(repr=False)
    workspace_sid: str
    report: SeedReport


def _plan(n_tasks: int, stuck_share: float, rng: random.Random) -> list[str]:
    if not 0.0 <= stuck_share <= 1.0:
        raise ValueError("stuck_share must be between 0 and 1")
    n_stuck = round(n_tasks * stuck_share)
    kinds: list[str] = []
    for kind, share in _STUCK_SPLIT[:-1]:
        kinds += [kind] * round(n_stuck * share)
    kinds += [_STUCK_SPLIT[-1][0]] * (n_stuck - len(kinds))
    others = list(itertools.islice(itertools.cycle(_OTHER_KINDS), n_tasks - n_stuck))
    kinds += others
    rng.shuffle(kinds)
    if "chat" in kinds:
        # The very first task is a chat task, so a clean-up that stops at the first non-voice
        # task (or assumes task 0 is voice) is caught.
        kinds.remove("chat")
        kinds.insert(0, "chat")
    return kinds


class _Seeder:
    def __init__(self, emu: Emulator, account_sid: str, workspace_sid: str, rng: random.Random):
        self.emu = emu
        self.account_sid = account_sid
        self.workspace_sid = workspace_sid
        self.rng = rng
        self.counters: Counter[str] = Counter()
        self.offset = timedelta(0)

    def cycle(self, kind: str, values: tuple[str, ...]) -> str:
        i = self.counters[kind]
        self.counters[kind] += 1
        return values[i % len(values)]

    def phone(self, prefix: str) -> str:
        return f"+1{prefix}{self.rng.randrange(10**7):07d}"

    def call(self, status: str, age: timedelta, ended_ago: timedelta | None = None) -> str:
        started = age + timedelta(seconds=self.rng.randint(2, 60))
        return self.emu.add_call(
            self.account_sid,
            status,
            ended_ago=ended_ago,
            started_ago=started,
            to="+15555550100",
            from_=self.phone("678"),
        )

    def ended_call(self, status: str, age: timedelta) -> str:
        """A call that ended more than 10 minutes ago (``age`` is the task's effective age)."""
        low = 11 * 60
        high = max(low, int((age - self.offset).total_seconds()) - 60)
        ended_ago = timedelta(seconds=self.rng.randint(low, high)) + self.offset
        return self.call(status, age, ended_ago)

    @staticmethod
    def voice_attrs(call_sid: str) -> dict[str, object]:
        return {
            "from_country": "US",
            "called": "+15555550100",
            "call_sid": call_sid,
            "from": "+16785550100",
            "to": "+15555550100",
            "direction": "inbound",
        }

    def task(
        self,
        kind: str,
        age: timedelta,
        status: str,
        attrs: object,
        channel: str = "voice",
    ) -> str:
        return self.emu.add_task(
            self.workspace_sid,
            status,
            channel,
            attrs,  # type: ignore[arg-type]
            queue=self.cycle("queue", _QUEUES),
            age=age,
        )

    def make(self, kind: str, age: timedelta) -> tuple[str, str | None]:
        age = age + self.offset
        attrs: object
        if kind in ("stuck_pending", "stuck_reserved", "stuck_assigned"):
            call_sid = self.ended_call(self.cycle(kind, _TERMINAL), age)
            status = kind.removeprefix("stuck_")
            return self.task(kind, age, status, self.voice_attrs(call_sid)), call_sid
        if kind == "live_call":
            call_sid = self.call(self.cycle(kind, _LIVE), age)
            status = self.cycle("live_status", _OPEN)
            return self.task(kind, age, status, self.voice_attrs(call_sid)), call_sid
        if kind == "recent_call_end":
            call_sid = self.call("completed", age, timedelta(seconds=30) + self.offset)
            status = self.cycle(kind, _OPEN)
            return self.task(kind, age, status, self.voice_attrs(call_sid)), call_sid
        if kind == "missing_call":
            call_sid = "CA" + f"{self.rng.getrandbits(128):032x}"
            status = self.cycle(kind, _OPEN)
            return self.task(kind, age, status, self.voice_attrs(call_sid)), call_sid
        if kind == "no_call_sid":
            attrs = {
                "outbound_to": self.phone("555"),
                "from": "+16785550100",
                "direction": "outbound",
            }
            return self.task(kind, age, self.cycle(kind, _OPEN), attrs), None
        if kind in ("invalid_json", "json_list", "json_number", "call_sid_not_string"):
            call_sid = self.ended_call("completed", age)
            attrs = {
                "invalid_json": json.dumps(self.voice_attrs(call_sid))[:-1].rsplit(",", 1)[0],
                "json_list": json.dumps([call_sid]),
                "json_number": "42",
                "call_sid_not_string": {"call_sid": 12345, "direction": "inbound"},
            }[kind]
            return self.task(kind, age, self.cycle(kind, _OPEN), attrs), None
        if kind == "chat":
            attrs = {
                "conversationSid": "CH" + f"{self.rng.getrandbits(128):032x}",
                "channelType": "chat",
                "customerName": "Web visitor",
                "direction": "inbound",
            }
            return self.task(kind, age, self.cycle(kind, _OPEN), attrs, "chat"), None
        if kind == "sms":
            attrs = {"channelType": "sms", "from": self.phone("678"), "direction": "inbound"}
            return self.task(kind, age, self.cycle(kind, _OPEN), attrs, "sms"), None
        if kind == "default_channel":
            # Tempting: a terminal call SID on a non-voice channel must still be left alone.
            call_sid = self.ended_call("completed", age)
            attrs = self.voice_attrs(call_sid)
            return self.task(kind, age, self.cycle(kind, _OPEN), attrs, "default"), call_sid
        # not open: wrapping (normal after a call ends), completed, canceled
        call_sid = self.ended_call("completed", age)
        return self.task(kind, age, kind, self.voice_attrs(call_sid)), call_sid


def seed_outage(
    emu: Emulator,
    account_sid: str,
    workspace_sid: str,
    *,
    n_tasks: int = 300,
    seed: int = 0,
    now: datetime | None = None,
    stuck_share: float = 0.8,
    kinds: str = "voice",
) -> SeedReport:
    """Fill a workspace as an outage leaves it: mostly stuck voice tasks plus every trap.

    Tasks are created oldest first over the last four hours (newest 15 minutes old), kinds
    shuffled so non-voice tasks are spread throughout; the first task is always a chat task.

    :param kinds: "voice" (the VOICE_KINDS) or "all": about a tenth of the ``n_tasks`` (at least
        one of each) are then EXTRA_KINDS (conferences, Flex Conversations, wrap-up), made with
        their own RNG after the voice tasks and dated in between them.
    """
    if kinds not in ("voice", "all"):
        raise ValueError('kinds must be "voice" or "all"')
    n_extra = 0
    if kinds == "all":
        n_extra = min(n_tasks, max(len(EXTRA_KINDS), round(n_tasks * _EXTRA_SHARE)))
    rng = random.Random(seed)
    seeder = _Seeder(emu, account_sid, workspace_sid, rng)
    if now is not None:
        seeder.offset = emu._clock() - now
    kinds_plan = _plan(n_tasks - n_extra, stuck_share, rng)
    span = _OLDEST - _NEWEST
    report = SeedReport(account_sid, workspace_sid, {}, {}, {})
    n = max(1, len(kinds_plan) - 1)
    for i, kind in enumerate(kinds_plan):
        age = _OLDEST - span * i / n
        task_sid, call_sid = seeder.make(kind, age)
        report.kinds[task_sid] = kind
        report.expected[task_sid] = KIND_VERDICTS[kind]
        report.call_sids[task_sid] = call_sid
    if n_extra:
        _seed_extra(seeder, report, n_extra, random.Random(f"extra-kinds-{seed}"))
    return report


def _seed_extra(voice: _Seeder, report: SeedReport, n_extra: int, rng: random.Random) -> None:
    """The EXTRA_KINDS, from their own RNG so the voice tasks stay exactly as before."""
    seeder = _ExtraSeeder(voice.emu, voice.account_sid, voice.workspace_sid, rng)
    seeder.offset = voice.offset
    seeder.report = report
    plan = list(itertools.islice(itertools.cycle(EXTRA_KINDS), n_extra))
    rng.shuffle(plan)
    for kind in plan:
        low = _EXTRA_MIN_AGE.get(kind, _NEWEST)
        # Strictly younger than the first voice task, which stays the oldest.
        high = int((_OLDEST - low).total_seconds()) - 1
        age = low + timedelta(seconds=rng.randint(0, max(0, high)))
        task_sid, call_sid = seeder.make_extra(kind, age)
        status = voice.emu.task(task_sid).status
        verdict = KIND_VERDICTS[kind]
        if kind in _BY_STATUS and status in ("pending", "reserved"):
            verdict = "cancel"
        report.kinds[task_sid] = kind
        report.expected[task_sid] = verdict
        report.call_sids[task_sid] = call_sid


class _ExtraSeeder(_Seeder):
    report: SeedReport

    def outbound_attrs(self) -> dict[str, object]:
        return {"outbound_to": self.phone("555"), "from": "+16785550100"}

    def conference(self, name: str, status: str, parts: dict[str, str], age: timedelta) -> str:
        ended = timedelta(minutes=20) + self.offset if status == "completed" else None
        return self.emu.add_conference(
            self.account_sid,
            friendly_name=name,
            status=status,
            ended_ago=ended,
            participants=parts,
            started_ago=age,
        )

    def interaction(
        self, kind: str, age: timedelta, status: str, channel_status: str, conv_state: str
    ) -> str:
        channel_type = self.cycle(f"{kind}-type", ("chat", "sms"))
        closed_ago = None
        if conv_state == "closed":
            closed_ago = timedelta(seconds=self.rng.randint(11 * 60, 15 * 60)) + self.offset
        conversation = self.emu.add_conversation(self.account_sid, conv_state, closed_ago)
        refs = self.emu.add_interaction(
            self.account_sid,
            workspace_sid=self.workspace_sid,
            channel_status=channel_status,
            channel_type=channel_type,
            task={
                "status": status,
                "channel": channel_type,
                "queue": self.cycle("queue", _QUEUES),
                "age": age,
            },
            agent_status="joined" if status in ("assigned", "wrapping") else None,
            conversation_sid=conversation,
        )
        self.report.interactions[refs.task_sid] = refs
        return refs.task_sid

    def make_extra(self, kind: str, age: timedelta) -> tuple[str, str | None]:
        age = age + self.offset
        attrs: dict[str, object]
        if kind in ("outbound_conference_ended", "outbound_conference_live"):
            ended = kind.endswith("_ended")
            ended_ago = timedelta(minutes=20) + self.offset
            customer, worker = (
                self.call("completed", age, ended_ago) if ended else self.call("in-progress", age)
                for _ in range(2)
            )
            parts = {"customer": customer, "worker": worker}
            name = f"Outbound {self.rng.randrange(10**6):06d}"
            conf = self.conference(name, "completed" if ended else "in-progress", parts, age)
            attrs = {**self.outbound_attrs(), "direction": "outbound"}
            attrs["conference"] = {"sid": conf, "participants": parts}
            task_sid = self.task(kind, age, "assigned", attrs)
            self.report.conference_sids[task_sid] = conf
            return task_sid, None
        if kind == "conference_by_name_ended":
            status = self.cycle(kind, ("assigned", "reserved", "assigned", "pending"))
            attrs = {**self.outbound_attrs(), "direction": "outbound"}
            task_sid = self.task(kind, age, status, attrs)
            conf = self.conference(task_sid, "completed", {}, age)
            self.report.conference_sids[task_sid] = conf
            return task_sid, None
        if kind == "call_ended_conference_live":
            call_sid = self.ended_call("completed", age)
            customer = self.call("in-progress", age)
            parts = {"customer": customer}
            conf = self.conference(f"Transfer {call_sid[-6:]}", "in-progress", parts, age)
            attrs = {
                **self.voice_attrs(call_sid),
                "conference": {"sid": conf, "participants": parts},
            }
            task_sid = self.task(kind, age, "assigned", attrs)
            self.report.conference_sids[task_sid] = conf
            return task_sid, call_sid
        if kind == "no_call_no_conference":
            return self.task(kind, age, self.cycle(kind, _OPEN), self.outbound_attrs()), None
        if kind == "participants_all_ended":
            status = self.cycle(kind, ("assigned", "reserved"))
            parts = {
                "customer": self.ended_call(self.cycle(f"{kind}-call", _TERMINAL), age),
                "worker": self.ended_call("completed", age),
            }
            attrs = {**self.outbound_attrs(), "direction": "outbound"}
            attrs["conference"] = {"participants": parts}
            return self.task(kind, age, status, attrs), None
        if kind == "messaging_channel_closed":
            return self.interaction(kind, age, "assigned", "closed", "closed"), None
        if kind == "messaging_conversation_closed":
            status = self.cycle(kind, ("assigned", "reserved"))
            return self.interaction(kind, age, status, "active", "closed"), None
        if kind == "messaging_active":
            status = self.cycle(kind, ("assigned", "pending"))
            return self.interaction(kind, age, status, "active", "active"), None
        if kind == "conversation_task_without_interaction":
            state = self.cycle(kind, ("closed", "active"))
            conv = self.emu.add_conversation(self.account_sid, state)
            attrs = {"conversationSid": conv, "channelType": "chat"}
            return self.task(kind, age, self.cycle("chat", _OPEN), attrs, "chat"), None
        if kind == "legacy_chat":
            attrs = {"channelSid": "CH" + f"{self.rng.getrandbits(128):032x}"}
            return self.task(kind, age, self.cycle(kind, _OPEN), attrs, "chat"), None
        # abandoned_wrapping / recent_wrapping: the agent never finished wrap-up.
        ago = timedelta(hours=3) if kind == "abandoned_wrapping" else timedelta(minutes=5)
        call_sid = self.call("completed", age, ago + self.offset)
        return self.task(kind, age, "wrapping", self.voice_attrs(call_sid)), call_sid


def sandbox_world(
    n_tasks: int = 300, seed: int = 0, *, kinds: str = "all", fixed_sids: bool = False
) -> tuple[Emulator, SandboxWorld]:
    """An emulator (not started) with one seeded account/workspace; pages hold at most 100.

    :param fixed_sids: every SID (account, workspace, tasks, calls, queues, ...) comes from
        ``SidSource(seed)``, so sandboxes built with the same arguments share their SIDs and
        task/call pairs: a plan saved against one applies to the next. The auth token stays
        random; timestamps stay relative to the clock (same ages, other absolute times).
    """
    emu = Emulator(
        Faults(max_page_size=100, seed=seed), sids=SidSource(seed) if fixed_sids else None
    )
    acct = emu.add_account("Sandbox Contact Center")
    ws = emu.add_workspace(acct.sid, "Sandbox Support")
    report = seed_outage(emu, acct.sid, ws.sid, n_tasks=n_tasks, seed=seed, kinds=kinds)
    return emu, SandboxWorld(acct.sid, acct.auth_token, ws.sid, report)
