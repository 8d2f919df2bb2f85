"""HTTPS on loopback: a throw-away CA and a server certificate for 127.0.0.1 and localhost.

Twilio serves its API over HTTPS only, and a client's CPU cost per request includes TLS, so
benchmarks should not measure against plain HTTP. trustme is a test extra: it is imported only
when TLS is asked for, so the emulator runs without it otherwise.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass

HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class LoopbackTls:
    """What to serve with (``server_context``) and what a client must trust (``ca_file``)."""

    server_context: ssl.SSLContext
    ca_file: str  # PEM of the throw-away CA; the caller removes it when done

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this CA only."""
        return ssl.create_default_context(cafile=self.ca_file)


def loopback_tls(directory: str | None = None) -> LoopbackTls:
    """Make a new CA and a server certificate for :data:`HOSTS`; write the CA to a temp file."""
    try:
        import trustme
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("TLS needs trustme: pip install 'stuck-tasks[test]'") from exc
    ca = trustme.CA(organization_name="stuck-tasks emulator (throw-away)")
    cert = ca.issue_cert(*HOSTS)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    fd, path = tempfile.mkstemp(prefix="stuck-tasks-emulator-ca-", suffix=".pem", dir=directory)
    with os.fdopen(fd, "wb") as out:
        out.write(ca.cert_pem.bytes())
    return LoopbackTls(context, path)
