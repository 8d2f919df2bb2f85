"""Point clients at a local emulator (reusable by any test).

The emulator answers a request for the Twilio host named in its ``Host`` header, so every
client here connects to the emulator's loopback address but keeps the original URL's host in
``Host`` (like curl's ``--connect-to``). Nothing ever reaches twilio.com.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

TASKROUTER = "https://taskrouter.twilio.com"
API = "https://api.twilio.com"
FLEX = "https://flex-api.twilio.com"
CONVERSATIONS = "https://conversations.twilio.com"


class _Rewriter:
    def __init__(self, base_url: str) -> None:
        target = urlsplit(base_url)
        self._scheme, self._netloc = target.scheme, target.netloc

    def rewrite(self, url: str) -> tuple[str, str]:
        """The emulator URL to connect to, and the Host header to send."""
        parts = urlsplit(url)
        target = urlunsplit((self._scheme, self._netloc, parts.path, parts.query, parts.fragment))
        return target, parts.netloc


class RewritingHttpClient(TwilioHttpClient):
    """A TwilioHttpClient that sends every request to ``base_url``, keeping path and query,
    with the original URL's host as the ``Host`` header."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._rewriter = _Rewriter(base_url)

    def rewrite(self, url: str) -> str:
        return self._rewriter.rewrite(url)[0]

    def request(
        self, method: str, url: str, *args: Any, headers: Any = None, **kwargs: Any
    ) -> Response:
        target, host = self._rewriter.rewrite(url)
        headers = {**(headers or {}), "Host": host}
        return super().request(method, target, *args, headers=headers, **kwargs)


class EmulatorSession(requests.Session):
    """A requests Session for Twilio URLs (``https://taskrouter.twilio.com/...``): sent to the
    emulator at ``base_url`` with the URL's host as ``Host``. An explicit Host header wins."""

    def __init__(self, base_url: str, auth: tuple[str, str] | None = None) -> None:
        super().__init__()
        self._rewriter = _Rewriter(base_url)
        self.auth = auth
        self.trust_env = False  # never a proxy from the environment

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, headers: Any = None, **kwargs: Any
    ) -> requests.Response:
        target, host = self._rewriter.rewrite(url)
        headers = {"Host": host, **(headers or {})}
        kwargs.setdefault("timeout", 10)
        return super().request(method, target, *args, headers=headers, **kwargs)


def emulator_client(
    base_url: str, username: str, password: str, account_sid: str, *, timeout: float = 10.0
) -> Client:
    """A real twilio ``Client`` talking to the emulator at ``base_url``."""
    http = RewritingHttpClient(base_url, timeout=timeout)
    return Client(username, password, account_sid=account_sid, http_client=http)
