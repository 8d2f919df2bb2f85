"""A scripted fake of the gateway seam, the size of httpx's ``MockTransport``.

Every gateway method becomes one call of ``handler(Call)``; the handler returns the answer or
an exception to raise (or an awaitable of either). ``Scripted`` builds a handler from a queue
of answers per method, and ``Tasks`` is a tiny workspace that answers task fetches and
updates the way TaskRouter does (If-Match, our Reason), for the settle and pipeline tests.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from stuck_tasks.decide import read_attributes
from stuck_tasks.errors import ApiError, NotFound
from stuck_tasks.models import CallFacts, Refs, TaskPage, TaskRecord, Workspace, Written

NOW = datetime.now(timezone.utc).replace(microsecond=0)  # the app reads the real clock
WS = "WS" + "0" * 32
AC = "AC" + "0" * 32


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]


class FakeGateway:
    """Implements ``models.Gateway``; every method is one call of ``handler``."""

    def __init__(self, handler: Callable[[Call], Any]) -> None:
        self.handler = handler
        self.calls: list[Call] = []

    async def _do(self, method: str, **args: Any) -> Any:
        call = Call(method, args)
        self.calls.append(call)
        await asyncio.sleep(0)  # a request yields, as a real one would
        answer = self.handler(call)
        if inspect.isawaitable(answer):
            answer = await answer
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    async def workspaces(self, friendly_name=None):
        return await self._do("workspaces", friendly_name=friendly_name)

    async def workspace(self, sid):
        return await self._do("workspace", sid=sid)

    async def account_name(self, sid):
        return await self._do("account_name", sid=sid)

    async def task_queues(self, workspace_sid):
        return await self._do("task_queues", workspace_sid=workspace_sid)

    async def workflows(self, workspace_sid):
        return await self._do("workflows", workspace_sid=workspace_sid)

    async def first_task_page(self, workspace_sid, *, statuses, filters):
        return await self._do("first_task_page", statuses=statuses, filters=dict(filters))

    async def next_task_page(self, workspace_sid, url):
        return await self._do("next_task_page", url=url)

    async def fetch_task(self, workspace_sid, sid):
        return await self._do("fetch_task", sid=sid)

    async def update_task(self, workspace_sid, sid, *, status, reason, if_match):
        return await self._do(
            "update_task", sid=sid, status=status, reason=reason, if_match=if_match
        )

    async def fetch_call(self, sid):
        return await self._do("fetch_call", sid=sid)

    async def fetch_conference(self, sid):
        return await self._do("fetch_conference", sid=sid)

    async def conferences_named(self, name, *, status):
        return await self._do("conferences_named", name=name, status=status)

    async def fetch_channel(self, interaction_sid, channel_sid):
        return await self._do("fetch_channel", sid=channel_sid)

    async def channel_participants(self, interaction_sid, channel_sid):
        return await self._do("channel_participants", sid=channel_sid)

    async def fetch_conversation(self, sid):
        return await self._do("fetch_conversation", sid=sid)

    async def close_participant(self, interaction_sid, channel_sid, participant_sid):
        return await self._do("close_participant", sid=participant_sid)

    async def close_channel(self, interaction_sid, channel_sid):
        return await self._do("close_channel", sid=channel_sid)

    async def aclose(self):
        return None

    def opener(self) -> Callable[[], Any]:
        """The factory the pipeline takes: each phase opens "its" gateway (this one)."""

        @asynccontextmanager
        async def open_gateway():
            yield self

        return open_gateway


def scripted(**queues: list[Any]) -> Callable[[Call], Any]:
    """A handler answering each method from its queue, in order (the last answer repeats)."""
    pending = {name: list(answers) for name, answers in queues.items()}

    def handler(call: Call) -> Any:
        answers = pending.get(call.method)
        if not answers:
            raise AssertionError(f"unscripted call {call.method}({call.args})")
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return handler


def sid(prefix: str, n: int) -> str:
    return f"{prefix}{n:032x}"


def voice_task(
    n: int, status: str = "pending", *, call: str | None = None, etag: str = "1"
) -> TaskRecord:
    attributes = f'{{"call_sid": "{call or sid("CA", n)}"}}'
    found = read_attributes(attributes)
    assert isinstance(found, Refs)
    return TaskRecord(
        sid=sid("WT", n),
        status=status,
        channel="voice",
        queue="Sales",
        date_created=NOW - timedelta(minutes=30),
        date_updated=NOW - timedelta(minutes=30),
        age=1800,
        refs=found,
        etag=etag,
    )


def ended_call(sid_: str, *, ago: timedelta = timedelta(minutes=10)) -> CallFacts:
    return CallFacts(sid_, "completed", NOW - ago, NOW - ago)


@dataclass
class Tasks:
    """A workspace of tasks as TaskRouter keeps them: revisions, If-Match, closes with Reason."""

    records: dict[str, TaskRecord] = field(default_factory=dict)
    calls: dict[str, CallFacts] = field(default_factory=dict)
    page_size: int = 1000
    writes: list[tuple[str, str]] = field(default_factory=list)

    def add(self, task: TaskRecord, call: CallFacts | None = None) -> TaskRecord:
        self.records[task.sid] = task
        if call is not None:
            self.calls[call.sid] = call
        return task

    def listed(self, task: TaskRecord) -> TaskRecord:
        """As a list page shows it: no attributes, no ETag (the spec's prose)."""
        return replace(task, refs=None, attributes_problem=None, etag=None)

    def page(self, start: int) -> TaskPage:
        tasks = [
            t for t in self.records.values() if t.status in ("pending", "reserved", "assigned")
        ]
        chunk = tasks[start : start + self.page_size]
        more = start + self.page_size < len(tasks)
        return TaskPage(
            tuple(self.listed(t) for t in chunk),
            f"https://taskrouter.twilio.com/v1/Workspaces/{WS}/Tasks?Page={start // self.page_size + 1}&PageToken=PT{start + self.page_size}"
            if more
            else None,
        )

    def fetch(self, task_sid: str) -> TaskRecord:
        try:
            return self.records[task_sid]
        except KeyError:
            raise NotFound(404, 20404, "The requested resource was not found") from None

    def update(self, task_sid: str, *, status: str, reason: str, if_match: str | None) -> Written:
        task = self.fetch(task_sid)
        if if_match is not None and if_match != task.etag:
            raise ApiError(412, 20412, "Precondition Failed")
        allowed = {"canceled": ("pending", "reserved"), "completed": ("assigned", "wrapping")}
        if task.status not in allowed[status]:
            raise ApiError(400, 20001, f"Cannot move task {task_sid} to {status}")
        revision = str(int(task.etag or "0") + 1)
        self.records[task_sid] = replace(task, status=status, twilio_reason=reason, etag=revision)
        self.writes.append((task_sid, status))
        return Written(status, revision)

    def handler(self, **overrides: Callable[[Call], Any]) -> Callable[[Call], Any]:
        """Answers the gateway like TaskRouter; ``overrides`` take over single methods."""

        def handle(call: Call) -> Any:
            if call.method in overrides:
                return overrides[call.method](call)
            a = call.args
            if call.method == "first_task_page":
                return self.page(0)
            if call.method == "next_task_page":
                return self.page(int(a["url"].rsplit("PT", 1)[1]))
            if call.method == "fetch_task":
                return self.fetch(a["sid"])
            if call.method == "update_task":
                return self.update(
                    a["sid"], status=a["status"], reason=a["reason"], if_match=a["if_match"]
                )
            if call.method == "fetch_call":
                found = self.calls.get(a["sid"])
                return found if found is not None else NotFound(404, 20404, "not found")
            if call.method == "workspace":
                return Workspace(WS, "Support", AC)
            raise AssertionError(f"unexpected call {call.method}")

        return handle


__all__ = [
    "AC",
    "NOW",
    "WS",
    "Call",
    "FakeGateway",
    "Tasks",
    "ended_call",
    "scripted",
    "sid",
    "voice_task",
]
