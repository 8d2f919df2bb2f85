"""The Emulator: a World served over HTTP on loopback from a background thread."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import datetime
from types import TracebackType

from aiohttp import web

from .faults import Faults
from .server import TwilioApp
from .sids import SidSource
from .world import World

_MAX_LINE = 1 << 20


class Emulator(World):
    """A local Twilio REST API (TaskRouter, v2010 Calls/Conferences, Flex Interactions, Conversations).

    ``start()`` serves on ``127.0.0.1`` (a free port by default) from a daemon thread with its
    own event loop, over HTTPS when given an ``ssl_context`` (see ``tls.loopback_tls``); the World
    methods stay usable from any thread while it runs. Clients connect to ``base_url`` and name
    the Twilio host they mean in the ``Host`` header (``Host: taskrouter.twilio.com``); only
    ``/__emulator/...`` answers on any host.
    """

    def __init__(
        self,
        faults: Faults | None = None,
        clock: Callable[[], datetime] | None = None,
        *,
        sids: SidSource | None = None,
    ) -> None:
        super().__init__(faults, clock, sids=sids)
        self._server_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._base_url

    def start(
        self, *, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> str:
        """Serve in a background thread; returns the base URL (``https://`` with an
        ``ssl_context``, a server-side context holding the certificate). Idempotent: while
        running, returns the running server's URL and ignores the arguments."""
        with self._server_lock:
            if self._base_url is not None:
                return self._base_url
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            ready = threading.Event()
            errors: list[BaseException] = []
            thread = threading.Thread(
                target=self._serve,
                args=(sock, ssl_context, ready, errors),
                name="twilio-emulator",
                daemon=True,
            )
            thread.start()
            ready.wait()
            if errors:
                thread.join()
                raise RuntimeError("emulator failed to start") from errors[0]
            self._thread = thread
            scheme = "http" if ssl_context is None else "https"
            self._base_url = f"{scheme}://{host}:{sock.getsockname()[1]}"
            return self._base_url

    def _serve(
        self,
        sock: socket.socket,
        ssl_context: ssl.SSLContext | None,
        ready: threading.Event,
        errors: list[BaseException],
    ) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(
            TwilioApp(self).build(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=0.5,
            # aiohttp's own 8 KiB limits answer text/plain 400s outside the app; with these
            # raised, over-long request lines and headers reach the app and get Twilio's JSON
            # error body instead.
            max_line_size=_MAX_LINE,
            max_field_size=_MAX_LINE,
            # Bodies arrive as sent: the app refuses any Content-Encoding with Twilio's error
            # body (aiohttp would inflate gzip itself and answer bad data with a plain 400).
            auto_decompress=False,
        )
        try:
            loop.run_until_complete(runner.setup())
            site = web.SockSite(runner, sock, ssl_context=ssl_context, backlog=1024)
            loop.run_until_complete(site.start())
        except BaseException as exc:  # report any start-up failure to start()
            errors.append(exc)
            sock.close()
            ready.set()
            loop.close()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            sock.close()

    def stop(self) -> None:
        """Stop serving (idempotent). The World's data stays readable."""
        with self._server_lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            self._loop = None
            self._thread = None
            self._base_url = None

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
