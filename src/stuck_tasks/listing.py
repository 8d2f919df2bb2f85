"""The first stage: every open task of the scope, once, as an async iterator.

Pages are read by following ``next_page_url`` to the end (``PageSize=1000``), each with the read
retry policy. A task that a page repeats is examined once; a page URL that comes back (a loop)
is an error, not a reason to read for ever. ``--task`` SIDs are given as they are, once each.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from .errors import BadResponse
from .models import Gateway, TaskRecord
from .ratecontrol import Reads
from .settings import Scope

# What the listing yields: a listed task, or the SID of a task to fetch (``--task``).
Listed = TaskRecord | str


class Listing:
    """Iterate once; afterwards ``complete`` tells whether the listing reached its end."""

    def __init__(
        self, gateway: Gateway, scope: Scope, *, statuses: tuple[str, ...], reads: Reads
    ) -> None:
        self._gw = gateway
        self._scope = scope
        self._statuses = statuses
        self._reads = reads
        self.listed = 0
        self.complete = False

    async def __aiter__(self) -> AsyncIterator[Listed]:
        stop = self._reads.stop
        if self._scope.task_sids:
            for sid in dict.fromkeys(self._scope.task_sids):
                if stop.requested:
                    return
                self.listed += 1
                yield sid
            self.complete = True
            return
        ws = self._scope.workspace_sid
        limit = self._scope.limit
        seen: set[str] = set()
        urls: set[str] = set()
        page = await self._reads.call(
            lambda: self._gw.first_task_page(
                ws, statuses=self._statuses, filters=self._scope.filters
            )
        )
        while True:
            for record in page.tasks:
                if stop.requested:
                    return
                if limit is not None and self.listed >= limit:
                    self.complete = True
                    return
                if record.sid in seen:
                    continue  # a page token that repeats items (undocumented): examine once
                seen.add(record.sid)
                self.listed += 1
                yield record
            url = page.next_url
            if not url:
                self.complete = True
                return
            if url in urls:
                raise BadResponse(
                    "Twilio's task list named a page it had already given (next_page_url "
                    "repeats): the listing cannot be trusted to end"
                )
            urls.add(url)
            if stop.requested:
                return
            page = await self._reads.call(lambda u=url: self._gw.next_task_page(ws, u))  # type: ignore[misc]
