"""Point the real twilio library at a local emulator (reusable by any test)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client


class RewritingHttpClient(TwilioHttpClient):
    """A TwilioHttpClient that sends every request to ``base_url``, keeping path and query."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        target = urlsplit(base_url)
        self._scheme, self._netloc = target.scheme, target.netloc

    def rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit((self._scheme, self._netloc, parts.path, parts.query, parts.fragment))

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        return super().request(method, self.rewrite(url), *args, **kwargs)


def emulator_client(
    base_url: str, username: str, password: str, account_sid: str, *, timeout: float = 10.0
) -> Client:
    """A real twilio ``Client`` talking to the emulator at ``base_url``."""
    http = RewritingHttpClient(base_url, timeout=timeout)
    return Client(username, password, account_sid=account_sid, http_client=http)
