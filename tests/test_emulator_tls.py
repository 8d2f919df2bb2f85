"""HTTPS on loopback: the emulator with a throw-away CA, in-process and as ``--tls``."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from stuck_tasks.emulator import Emulator
from stuck_tasks.emulator.tls import LoopbackTls, loopback_tls

TRUST_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture
def tls(tmp_path: Path) -> LoopbackTls:
    return loopback_tls(str(tmp_path))


@pytest.fixture
def https(tls: LoopbackTls) -> Iterator[tuple[Emulator, tuple[str, str], str]]:
    emu = Emulator()
    acct = emu.add_account()
    ws = emu.add_workspace(acct.sid)
    emu.add_task(ws.sid, "pending")
    emu.start(ssl_context=tls.server_context)
    yield emu, (acct.sid, acct.auth_token), ws.sid
    emu.stop()


HOST = "taskrouter.twilio.com"  # connect to the emulator, mean TaskRouter


def aiohttp_get(url: str, auth: tuple[str, str], ssl_option: ssl.SSLContext | bool) -> int:
    headers = {
        "Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode(),
        "Host": HOST,
    }

    async def go() -> int:
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.get(url, ssl=ssl_option) as resp,
        ):
            await resp.read()
            return resp.status

    return asyncio.run(go())


def test_an_https_round_trip_trusting_the_throwaway_ca(
    tls: LoopbackTls, https: tuple[Emulator, tuple[str, str], str]
) -> None:
    emu, auth, ws = https
    assert emu.base_url.startswith("https://127.0.0.1:")
    url = f"{emu.base_url}/v1/Workspaces/{ws}/Tasks?PageSize=1"
    resp = requests.get(url, auth=auth, headers={"Host": HOST}, verify=tls.ca_file, timeout=10)
    assert resp.status_code == 200
    assert resp.json()["meta"]["url"].startswith(f"https://{HOST}/v1/Workspaces/")
    assert aiohttp_get(url, auth, tls.client_context()) == 200
    by_name = url.replace("127.0.0.1", "localhost")  # the certificate names both
    assert (
        requests.get(
            by_name, auth=auth, headers={"Host": HOST}, verify=tls.ca_file, timeout=10
        ).status_code
        == 200
    )


def test_https_fails_without_trusting_the_ca(
    https: tuple[Emulator, tuple[str, str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in TRUST_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    emu, auth, ws = https
    url = f"{emu.base_url}/v1/Workspaces/{ws}/Tasks"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, auth=auth, timeout=10)
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        aiohttp_get(url, auth, ssl.create_default_context())
    with pytest.raises(requests.ConnectionError):
        requests.get(url.replace("https://", "http://"), auth=auth, timeout=10)
    assert emu.request_log == []


# ---------------------------------------------------------------- python -m stuck_tasks.emulator --tls

CLIENT = """
import asyncio, base64, json, sys
import aiohttp, requests

url, user, password = sys.argv[1:4]

async def with_aiohttp():
    try:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        auth = {"Authorization": f"Basic {token}", "Host": "taskrouter.twilio.com"}
        async with aiohttp.ClientSession(headers=auth) as s:
            async with s.post(url, data={"AssignmentStatus": "canceled", "Reason": "x"}) as r:
                return [r.status, {k: v for k, v in r.headers.items() if k.startswith("X-Rate")}]
    except aiohttp.ClientError as exc:
        return type(exc).__name__

try:
    plain = requests.get(
        url, auth=(user, password), headers={"Host": "taskrouter.twilio.com"}, timeout=10
    ).status_code
except requests.exceptions.SSLError as exc:
    plain = type(exc).__name__
print(json.dumps({"aiohttp": asyncio.run(with_aiohttp()), "requests": plain}))
"""


@pytest.fixture
def tls_process() -> Iterator[dict[str, Any]]:
    cmd = [
        sys.executable,
        "-m",
        "stuck_tasks.emulator",
        "--tls",
        "--tasks",
        "3",
        "--taskrouter-limit",
        "Task-Update=25",
        "--taskrouter-window",
        "10",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        assert proc.stdout is not None
        info: dict[str, Any] = json.loads(proc.stdout.readline())
        yield info
    finally:
        proc.terminate()
        code = proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0
    assert not os.path.exists(info["ca_file"]), "the CA file outlives the emulator"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TRUST_VARIABLES}
    env.update(extra)
    return env


def run_client(info: dict[str, Any], **env: str) -> dict[str, Any]:
    url = f"{info['base_url']}/v1/Workspaces/{info['workspace_sid']}/Tasks/WT{'0' * 32}"
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, url, info["account_sid"], info["auth_token"]],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_tls_flag_serves_https_that_aiohttp_trusts_through_ssl_cert_file(
    tls_process: dict[str, Any],
) -> None:
    info = tls_process
    assert info["base_url"].startswith("https://127.0.0.1:")
    assert Path(info["ca_file"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    trusted = run_client(info, SSL_CERT_FILE=info["ca_file"])
    # aiohttp's default context (ssl.create_default_context() at import) reads SSL_CERT_FILE;
    # requests does not (it uses certifi unless REQUESTS_CA_BUNDLE is set).
    assert trusted == {
        "aiohttp": [
            404,
            {
                "X-Rate-Limit-Limit": "25",
                "X-Rate-Limit-Remaining": "249",
                "X-Rate-Limit-Config": "Task-Update;window=10",
            },
        ],
        "requests": "SSLError",
    }
    assert run_client(info, REQUESTS_CA_BUNDLE=info["ca_file"])["requests"] == 404
    assert run_client(info) == {
        "aiohttp": "ClientConnectorCertificateError",
        "requests": "SSLError",
    }


def test_the_emulator_imports_trustme_only_for_tls() -> None:
    code = "import sys, stuck_tasks.emulator.__main__; print('trustme' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
