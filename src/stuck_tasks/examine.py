"""The second stage: one task in, one ``Case`` out.

The task is fetched when its attributes matter and the list did not carry them (the fetch also
gives the ETag for ``If-Match``). Then the decision module is asked which lookups it needs, they
are made (concurrently, each once per run however many tasks name the same call), and asked
again until it can decide.

Fatal errors (credentials refused, a missing permission, the deadline) are raised to the
pipeline, which stops the run; everything else becomes the task's reason to be left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from .decide import decide, evidence_summary, lookups_needed, needs_attributes
from .errors import (
    ApiError,
    AuthError,
    DeadlineExceeded,
    NotFound,
    Stopped,
    StuckTasksError,
    describe,
)
from .models import (
    Action,
    Case,
    Decision,
    Evidence,
    Gateway,
    Look,
    Lookup,
    Missing,
    Reason,
    Result,
    Rules,
    TaskRecord,
)
from .ratecontrol import Reads

FATAL = (AuthError, DeadlineExceeded, Stopped)

_FAILED = {
    Look.CALL: (Reason.CALL_NOT_FOUND, Reason.CALL_LOOKUP_FAILED),
    Look.CONFERENCE: (Reason.CONFERENCE_NOT_FOUND, Reason.CONFERENCE_LOOKUP_FAILED),
    Look.CONFERENCES_NAMED: (Reason.CONFERENCE_NOT_FOUND, Reason.CONFERENCE_LOOKUP_FAILED),
    Look.CHANNEL: (Reason.CHANNEL_NOT_FOUND, Reason.CHANNEL_LOOKUP_FAILED),
    Look.PARTICIPANTS: (Reason.CHANNEL_NOT_FOUND, Reason.CHANNEL_LOOKUP_FAILED),
    Look.CONVERSATION: (Reason.CONVERSATION_NOT_FOUND, Reason.CONVERSATION_LOOKUP_FAILED),
}


class Examiner:
    """Turns tasks into cases for one workspace; remembers each lookup for the run."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        workspace_sid: str,
        rules: Rules,
        reads: Reads,
        now: Callable[[], datetime],
    ) -> None:
        self._gw = gateway
        self._ws = workspace_sid
        self._rules = rules
        self._reads = reads
        self._now = now
        self._known: dict[Lookup, asyncio.Future[Result]] = {}

    async def examine(self, item: TaskRecord | str) -> Case:
        """The case for a listed task, or for a task SID to fetch first."""
        task = item if isinstance(item, TaskRecord) else None
        if task is None or (needs_attributes(task, self._rules) and not task.attributes_read):
            sid = item if isinstance(item, str) else item.sid
            fetched = await self._fetch(sid, task)
            if isinstance(fetched, Case):
                return fetched
            task = fetched
        return await self.decide(task)

    async def decide(self, task: TaskRecord) -> Case:
        """Look up what the decision needs, then decide (the task is already read)."""
        evidence = Evidence()
        while needed := lookups_needed(task, evidence, now=self._now(), rules=self._rules):
            if len(needed) == 1:  # most tasks: one call; gather would wrap it in a task
                found: Sequence[Result] = (await self._lookup(needed[0]),)
            else:
                found = await asyncio.gather(*(self._lookup(lookup) for lookup in needed))
            evidence = evidence.plus(zip(needed, found, strict=True))
        decision = decide(task, evidence, now=self._now(), rules=self._rules)
        call_status, ended_at = evidence_summary(task, evidence)
        return Case(task, decision, evidence, call_status, ended_at)

    async def _fetch(self, sid: str, listed: TaskRecord | None) -> TaskRecord | Case:
        shown = listed or TaskRecord(sid=sid, status="?", channel="?")
        try:
            return await self._reads.call(lambda: self._gw.fetch_task(self._ws, sid))
        except FATAL:
            raise
        except NotFound:
            return Case(shown, Decision(Action.LEAVE, Reason.TASK_NOT_FOUND, "404"))
        except StuckTasksError as error:
            detail = f"task could not be read: {describe(error)}"
            return Case(shown, Decision(Action.LEAVE, Reason.TASK_FETCH_FAILED, detail))

    async def _lookup(self, lookup: Lookup) -> Result:
        """Read once per run, even when several tasks name the same resource."""
        known = self._known.get(lookup)
        if known is not None and not known.cancelled():
            return await asyncio.shield(known)
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._known[lookup] = future
        try:
            result = await self._answer(lookup)
        except BaseException as error:
            if isinstance(error, Exception):
                future.set_exception(error)
                future.exception()  # retrieved: no "never retrieved" warning if none waits
            else:
                future.cancel()
            raise
        future.set_result(result)
        return result

    async def _answer(self, lookup: Lookup) -> Result:
        not_found, failed = _FAILED[lookup.kind]
        try:
            return await self._reads.call(self._request(lookup))
        except FATAL:
            raise
        except NotFound as error:
            return Missing(not_found, error.code)
        except ApiError as error:
            return Missing(failed, error.code)
        except StuckTasksError:
            return Missing(failed)

    def _request(self, lookup: Lookup) -> Callable[[], Awaitable[Result]]:
        gw, sid, parent = self._gw, lookup.sid, lookup.parent
        if lookup.kind is Look.CALL:
            return lambda: gw.fetch_call(sid)
        if lookup.kind is Look.CONFERENCE:
            return lambda: gw.fetch_conference(sid)
        if lookup.kind is Look.CONFERENCES_NAMED:
            return lambda: gw.conferences_named(sid, status=lookup.status)
        if lookup.kind is Look.CHANNEL:
            return lambda: gw.fetch_channel(parent, sid)
        if lookup.kind is Look.PARTICIPANTS:
            return lambda: gw.channel_participants(parent, sid)
        return lambda: gw.fetch_conversation(sid)
