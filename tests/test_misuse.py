"""Misuse and tampering fail safely: one clear line, a documented exit code, nothing sent to the
wrong place, nothing changed.

Every test runs the real tool against the emulator over real HTTP on loopback. Where a test
needs to see what the tool sends (or that it sends nothing), it puts a small server of its own
on loopback: a trap that records every connection (used as the HTTP(S) proxy, which the tool
honours, so a request to any other machine would land there), or a forwarding server in front
of the emulator that can bend an answer.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import socket
import socketserver
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from conftest import World, json_out, make_world
from stuck_tasks.emulator import Emulator, Faults, seed_outage

OPEN = ("pending", "reserved", "assigned")
TASKROUTER = "https://taskrouter.twilio.com"


def one_line(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) == 1 and "Traceback" not in text


def posts(world: World, since: int = 0) -> list[Any]:
    return [r for r in world.emu.request_log[since:] if r.method == "POST"]


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def stuck_task(world: World, *, status: str = "pending", queue: str = "Sales") -> str:
    call = world.emu.add_call(world.account_sid, status="completed", ended_ago=timedelta(minutes=9))
    return world.emu.add_task(
        world.workspace_sid,
        status=status,
        channel="voice",
        attributes={"call_sid": call},
        queue=queue,
    )


@pytest.fixture
def seeded() -> Iterator[World]:
    """A small post-outage workspace (about 50 stuck tasks over short pages)."""
    w = make_world(Faults(max_page_size=25), n_tasks=60, seed=11)
    yield w
    w.emu.stop()


# ------------------------------------------------------------------ servers of our own


class Trap:
    """A loopback TCP listener that records every connection and its first bytes, and answers
    an HTML page (which the tool refuses at once as "not JSON")."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        trap = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        chunk = self.request.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                trap.seen.append(data)
                body = b"<html>a trap, not Twilio</html>"
                self.request.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def trap() -> Iterator[Trap]:
    t = Trap()
    yield t
    t.close()


Rewrite = Callable[[str, str, bytes], bytes]
_FORWARDED = ("Host", "Authorization", "If-Match", "Content-Type", "User-Agent", "Accept")
_NOT_COPIED = {
    "content-length",
    "transfer-encoding",
    "connection",
    "content-encoding",
    "keep-alive",
}


class Forwarder:
    """A loopback HTTP server (aiohttp, in a thread) in front of the emulator: forwards method,
    path, query, body, Host and Authorization (and If-Match, Content-Type), records what it
    saw, and can rewrite an answer's body."""

    def __init__(self, upstream: str, *, host: str = "127.0.0.1", rewrite: Rewrite | None = None):
        self.upstream = upstream
        self.rewrite = rewrite
        self.seen: list[tuple[str, str, str]] = []  # (method, path, Host)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        port = self._sock.getsockname()[1]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self._loop = asyncio.new_event_loop()
        self._failed: BaseException | None = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10) or self._failed:
            raise RuntimeError("the forwarding server did not start") from self._failed

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)

        async def start() -> None:
            await runner.setup()
            await web.SockSite(runner, self._sock).start()
            self._session = aiohttp.ClientSession(auto_decompress=False)

        try:
            loop.run_until_complete(start())
        except BaseException as error:  # reported by __init__
            self._failed = error
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._session.close())
            loop.run_until_complete(runner.cleanup())
            loop.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((request.method, request.path, request.headers.get("Host", "")))
        headers = {k: request.headers[k] for k in _FORWARDED if k in request.headers}
        async with self._session.request(
            request.method,
            URL(self.upstream + request.raw_path, encoded=True),
            data=body or None,
            headers=headers,
            allow_redirects=False,
        ) as answer:
            data = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _NOT_COPIED}
            status = answer.status
        if self.rewrite is not None:
            data = self.rewrite(request.method, request.path, data)
        return web.Response(status=status, body=data, headers=out)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# ------------------------------------------------------------------ 1. where credentials go


REFUSED_BASE_URLS: dict[str, tuple[list[str], dict[str, str | None], str | None]] = {
    # name: (arguments, environment, ./.env)
    "flag-http-elsewhere": (["--base-url", "http://example.com"], {}, None),
    "env-http-elsewhere": ([], {"STUCK_TASKS_BASE_URL": "http://10.0.0.1:8080"}, None),
    "dotenv-http-elsewhere": (
        [],
        {"STUCK_TASKS_BASE_URL": None},
        "STUCK_TASKS_BASE_URL=http://10.0.0.1:8080\n",
    ),
    "userinfo": (["--base-url", "https://user:pw@127.0.0.1:1"], {}, None),
}


@pytest.mark.parametrize("case", sorted(REFUSED_BASE_URLS))
def test_a_base_url_elsewhere_is_refused_and_nothing_is_sent(
    world: World, tmp_path: Path, trap: Trap, case: str
):
    args, env, dotenv = REFUSED_BASE_URLS[case]
    stuck_task(world)
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv)
    # A request to any other machine would go through the trap: the tool honours proxies.
    via_trap = {"HTTP_PROXY": trap.url, "HTTPS_PROXY": trap.url}
    result = world.invoke("--yes", "--deadline", "20s", *args, **env, **via_trap)
    assert result.exit_code == 2, result.stderr
    assert one_line(result.stderr), result.stderr
    assert "--base-url" in result.stderr
    assert "nothing was sent" in result.stderr
    assert "pw@" not in result.stderr  # the refusal does not repeat the password
    assert trap.seen == []
    assert world.emu.request_log == []
    assert world.emu.mutations == []
    # Control: the trap does see what the tool sends through it (a loopback URL, proxied).
    (tmp_path / ".env").unlink(missing_ok=True)
    control = world.invoke("--dry-run", "--base-url", "http://127.0.0.1:1", **via_trap)
    assert control.exit_code == 1, control.stderr
    assert trap.seen


def test_a_loopback_base_url_is_accepted_and_named(world: World, tmp_path: Path):
    stuck_task(world)
    port = world.emu.base_url.rsplit(":", 1)[1]
    for i, url in enumerate((f"http://127.0.0.1:{port}", f"http://localhost:{port}")):
        audit = tmp_path / f"audit-{i}.jsonl"
        result = world.invoke("--dry-run", "--base-url", url, "--audit-log", str(audit))
        assert result.exit_code == 0, (url, result.stderr)
        assert re.search(rf"base URL\s+{re.escape(url)}", result.stdout), result.stdout
        assert read_lines(audit)[0]["base_url"] == url
    # ::1: a forwarding server of ours there, in front of the emulator.
    v6 = Forwarder(world.emu.base_url, host="::1")
    try:
        result = world.invoke("--dry-run", "--json", "--base-url", v6.url)
    finally:
        v6.close()
    assert result.exit_code == 0, result.stderr
    assert json_out(result)["connection"]["base_url"] == v6.url
    assert v6.seen, "nothing reached the server on [::1]"
    assert {host for _, _, host in v6.seen} <= {"taskrouter.twilio.com", "api.twilio.com"}
    assert world.emu.mutations == []


# ------------------------------------------------------------------ 2. page URLs


def test_a_page_url_naming_another_host_is_refused_before_sending(tmp_path):
    w = make_world(Faults(max_page_size=20), n_tasks=60, seed=5)
    bent: list[str] = []

    def evil_next_page(method: str, path: str, data: bytes) -> bytes:
        if bent or method != "GET" or not path.endswith("/Tasks"):
            return data
        doc = json.loads(data)
        url = doc["meta"]["next_page_url"] or ""
        if not url.startswith(TASKROUTER + "/v1/"):
            return data
        doc["meta"]["next_page_url"] = "https://evil.example.com" + url[len(TASKROUTER) :]
        bent.append(doc["meta"]["next_page_url"])
        return json.dumps(doc).encode()

    proxy = Forwarder(w.emu.base_url, rewrite=evil_next_page)
    try:
        before = w.statuses()
        result = w.invoke(
            "--yes", "--audit-log", str(tmp_path / "a.jsonl"), STUCK_TASKS_BASE_URL=proxy.url
        )
    finally:
        proxy.close()
        w.emu.stop()
    assert bent, "the first page was never bent"
    assert result.exit_code == 1, result.stderr
    assert one_line(result.stderr), result.stderr
    assert "evil.example.com" in result.stderr
    assert all("evil" not in host for _, _, host in proxy.seen)
    assert all("evil" not in r.host for r in w.emu.request_log)
    assert [m for m, _, _ in proxy.seen if m == "POST"] == []
    assert posts(w) == []
    assert w.emu.mutations == []
    assert w.statuses() == before


# ------------------------------------------------------------------ 3. saved plans


class PlanWorld:
    """Workspace A (seeded, with a saved plan) and workspace B of the same account (seeded too)."""

    def __init__(self, world: World, other_sid: str, other_stuck: list[str], plan: dict[str, Any]):
        self.world = world
        self.other_sid = other_sid
        self.other_stuck = other_stuck
        self.plan = plan


@pytest.fixture(scope="module")
def plan_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlanWorld]:
    w = make_world(n_tasks=40, seed=3)
    other = w.emu.add_workspace(w.account_sid, friendly_name="Other Support")
    report = seed_outage(w.emu, w.account_sid, other.sid, n_tasks=20, seed=4)
    other_stuck = report.with_verdict("cancel") + report.with_verdict("complete")
    folder = tmp_path_factory.mktemp("plan")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        saved = w.invoke("--save-plan", str(folder / "plan.json"))
    assert saved.exit_code == 0, saved.stderr
    plan = json.loads((folder / "plan.json").read_text())
    assert {t["status"] for t in plan["tasks"]} >= {"pending", "assigned"}
    yield PlanWorld(w, other.sid, other_stuck, plan)
    w.emu.stop()


def _first(doc: dict[str, Any], status: str) -> dict[str, Any]:
    return next(t for t in doc["tasks"] if t["status"] == status)


def _no_zone(stamp: str) -> str:
    return stamp.removesuffix("Z").split("+")[0]


TAMPERING: dict[str, Callable[[dict[str, Any], PlanWorld], None]] = {
    "task-sid-path-traversal": lambda d, pw: d["tasks"][0].update(
        task_sid=f"../../{pw.other_sid}/Tasks/{pw.other_stuck[0]}"
    ),
    "refs-a-list": lambda d, pw: d["tasks"][0].update(refs=[d["tasks"][0]["call_sid"]]),
    "refs-a-string": lambda d, pw: d["tasks"][0].update(refs=d["tasks"][0]["call_sid"]),
    "call-ended-at-without-zone": lambda d, pw: d["tasks"][0].update(
        call_ended_at=_no_zone(d["tasks"][0]["call_ended_at"])
    ),
    "created-at-without-zone": lambda d, pw: d.update(created_at=_no_zone(d["created_at"])),
    "created-at-in-the-future": lambda d, pw: d.update(
        created_at=(datetime.now(UTC) + timedelta(hours=2)).isoformat()
    ),
    "unknown-top-level-field": lambda d, pw: d.update(force=True),
    "unknown-task-field": lambda d, pw: d["tasks"][0].update(if_match="*"),
    "duplicated-task": lambda d, pw: d["tasks"].append(copy.deepcopy(d["tasks"][0])),
    "cancel-an-assigned-task": lambda d, pw: _first(d, "assigned").update(action="cancel"),
    "bad-account-sid": lambda d, pw: d.update(account_sid="AC-not-a-sid"),
}


@pytest.mark.parametrize("tampering", sorted(TAMPERING))
def test_a_tampered_plan_is_refused_and_changes_nothing(
    plan_world: PlanWorld, tmp_path: Path, tampering: str
):
    w = plan_world.world
    doc = copy.deepcopy(plan_world.plan)
    TAMPERING[tampering](doc, plan_world)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(doc))
    since = len(w.emu.request_log)
    before = {t.sid: t.status for t in w.emu.tasks()}
    result = w.invoke("--apply-plan", str(path), "--yes")
    assert result.exit_code == 2, result.stderr
    assert one_line(result.stderr), result.stderr
    assert "damaged" in result.stderr
    assert "Traceback" not in result.stdout
    assert posts(w, since) == []
    assert {t.sid: t.status for t in w.emu.tasks()} == before


def test_a_plan_for_another_workspace_is_refused(plan_world: PlanWorld, tmp_path: Path):
    w = plan_world.world
    since = len(w.emu.request_log)
    # The plan, unchanged, applied with another workspace configured.
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_world.plan))
    result = w.invoke("--apply-plan", str(path), "--yes", "--workspace", plan_world.other_sid)
    assert result.exit_code == 2, result.stderr
    assert one_line(result.stderr), result.stderr
    assert "workspace" in result.stderr
    # The plan edited to name another workspace (of the same account) than the configured one.
    doc = copy.deepcopy(plan_world.plan)
    doc["workspace_sid"] = plan_world.other_sid
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    result = w.invoke("--apply-plan", str(edited), "--yes")
    assert result.exit_code == 2, result.stderr
    assert one_line(result.stderr), result.stderr
    assert plan_world.other_sid in result.stderr
    # Another account's SID (well-formed) is refused too.
    other_account = w.emu.add_account(friendly_name="Elsewhere")
    doc = copy.deepcopy(plan_world.plan)
    doc["account_sid"] = other_account.sid
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(doc))
    result = w.invoke("--apply-plan", str(elsewhere), "--yes")
    assert result.exit_code == 2, result.stderr
    assert one_line(result.stderr), result.stderr
    assert "account" in result.stderr
    assert posts(w, since) == []


def test_an_untampered_plan_applies_to_its_own_workspace_only(tmp_path: Path):
    w = make_world(n_tasks=40, seed=3)
    try:
        other = w.emu.add_workspace(w.account_sid, friendly_name="Other Support")
        seed_outage(w.emu, w.account_sid, other.sid, n_tasks=20, seed=4)
        other_before = {t.sid: t.status for t in w.emu.tasks(other.sid)}
        plan = tmp_path / "plan.json"
        assert w.invoke("--save-plan", str(plan)).exit_code == 0
        planned = {t["task_sid"] for t in json.loads(plan.read_text())["tasks"]}
        since = len(w.emu.request_log)
        result = w.invoke("--apply-plan", str(plan), "--yes", "--json", TWILIO_WORKSPACE_SID=None)
        assert result.exit_code == 0, result.stderr
        assert json_out(result)["closed"] == len(planned)
        sent = w.emu.request_log[since:]
        for r in sent:
            if r.path.startswith("/v1/Workspaces/"):
                assert r.path.split("/")[3] == w.workspace_sid, r.path
        written = {r.path.rsplit("/", 1)[1] for r in sent if r.method == "POST"}
        assert written == planned
        assert {m.task_sid for m in w.emu.mutations} == planned
        assert {t.sid: t.status for t in w.emu.tasks(other.sid)} == other_before
    finally:
        w.emu.stop()


# ------------------------------------------------------------------ 4. .env and secrets


def _dotenv(path: Path, **values: str) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))


def test_env_file_only_from_the_working_folder_and_no_secret_anywhere(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    stuck_task(world)
    no_env = {"TWILIO_ACCOUNT_SID": None, "TWILIO_AUTH_TOKEN": None}
    _dotenv(
        tmp_path / ".env",
        TWILIO_ACCOUNT_SID=world.account_sid,
        TWILIO_AUTH_TOKEN=world.auth_token,
    )
    below = tmp_path / "below"
    below.mkdir()
    monkeypatch.chdir(below)
    # A parent folder's .env is never read.
    result = world.invoke("--dry-run", **no_env)
    assert result.exit_code == 2, result.stderr
    assert one_line(result.stderr), result.stderr
    assert "no Twilio credentials" in result.stderr
    assert world.emu.request_log == []
    # Named explicitly, it is.
    result = world.invoke("--dry-run", "--json", "--env-file", str(tmp_path / ".env"), **no_env)
    assert result.exit_code == 0, result.stderr
    assert str(tmp_path / ".env") in json_out(result)["connection"]["credentials"]

    # The working folder's .env with an API key: the headers name ./.env and the key's SID.
    key = world.emu.add_api_key(world.account_sid)
    secrets = (key.secret, world.auth_token)
    _dotenv(
        below / ".env",
        TWILIO_ACCOUNT_SID=world.account_sid,
        TWILIO_API_KEY=key.sid,
        TWILIO_API_SECRET=key.secret,
    )
    audit, plan = below / "audit.jsonl", below / "plan.json"
    seen: list[str] = []
    result = world.invoke("--dry-run", "--verbose", "--audit-log", str(audit), **no_env)
    assert result.exit_code == 0, result.stderr
    seen += [result.stdout, result.stderr]
    header = read_lines(audit)[0]
    assert "./.env" in header["credentials"]
    assert key.sid in header["credentials"]
    assert header["api_key_sid"] == key.sid
    result = world.invoke("--save-plan", str(plan), "--json", **no_env)
    assert result.exit_code == 0, result.stderr
    assert "./.env" in json_out(result)["connection"]["credentials"]
    seen += [result.stdout, result.stderr, audit.read_text(), plan.read_text()]
    # The auth token from ./.env (the Account resource's body carries it back).
    _dotenv(
        below / ".env", TWILIO_ACCOUNT_SID=world.account_sid, TWILIO_AUTH_TOKEN=world.auth_token
    )
    token_audit = below / "token.jsonl"
    result = world.invoke(
        "--dry-run", "--json", "--verbose", "--audit-log", str(token_audit), **no_env
    )
    assert result.exit_code == 0, result.stderr
    assert read_lines(token_audit)[0]["api_key_sid"] is None
    seen += [result.stdout, result.stderr, token_audit.read_text()]
    for text in seen:
        for secret in secrets:
            assert secret not in text
    assert world.emu.mutations == []


# ------------------------------------------------------------------ 5. names


@pytest.mark.parametrize(
    ("option", "typo", "known"),
    [
        ("--task-queue", "Salse", ("Sales", "Support", "Billing")),
        ("--workflow", "Nope", ("Default",)),
    ],
)
def test_an_unknown_queue_or_workflow_is_refused_with_the_known_names(
    seeded: World, option: str, typo: str, known: tuple[str, ...]
):
    result = seeded.invoke("--yes", option, typo)
    assert result.exit_code == 2, result.stderr
    assert one_line(result.stderr), result.stderr
    assert typo in result.stderr
    for name in known:
        assert name in result.stderr, result.stderr
    assert posts(seeded) == []
    assert seeded.emu.mutations == []


def test_a_queue_name_limits_the_run_to_that_queue(seeded: World):
    w = seeded
    sales = {t.sid for t in w.emu.tasks(w.workspace_sid) if t.status in OPEN and t.queue == "Sales"}
    others = {t.sid for t in w.emu.tasks(w.workspace_sid) if t.status in OPEN} - sales
    assert sales
    assert others
    result = w.invoke("--dry-run", "--json", "--task-queue", "Sales")
    assert result.exit_code == 0, result.stderr
    assert json_out(result)["examined"] == len(sales)
    fetched = {
        r.path.rsplit("/", 1)[1]
        for r in w.emu.request_log
        if r.method == "GET" and re.fullmatch(r"/v1/Workspaces/WS\w+/Tasks/WT\w+", r.path)
    }
    assert fetched
    assert fetched <= sales
    assert w.emu.mutations == []


@pytest.mark.parametrize(
    ("args", "drop"),
    [
        (["--task", "{task}", "--limit", "3"], "drop --limit"),
        (["--task", "{task}", "--task-queue", "Sales"], "drop --task-queue"),
        (["--apply-plan", "{plan}", "--dry-run"], "drop --dry-run"),
    ],
    ids=["task-with-limit", "task-with-task-queue", "apply-plan-with-dry-run"],
)
def test_options_that_do_not_go_together_are_usage_errors(
    world: World, tmp_path: Path, args: list[str], drop: str
):
    task = stuck_task(world)
    plan = tmp_path / "plan.json"
    plan.write_text("{}")  # exists, so click's own "does not exist" is not what refuses it
    result = world.invoke("--yes", *(a.format(task=task, plan=plan) for a in args))
    assert result.exit_code == 2, result.stderr
    assert "Usage:" in result.stderr, result.stderr
    assert drop in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert world.emu.request_log == []


def test_a_task_named_twice_is_examined_once(world: World):
    task = stuck_task(world)
    result = world.invoke("--dry-run", "--json", "--task", task, "--task", task)
    assert result.exit_code == 0, result.stderr
    assert json_out(result)["examined"] == 1
    fetches = [r for r in world.emu.request_log if r.method == "GET" and r.path.endswith(task)]
    assert len(fetches) == 1
    assert world.emu.mutations == []


# ------------------------------------------------------------------ 6. guards


def test_guards_tell_the_truth_in_every_mode(seeded: World, tmp_path: Path):
    w = seeded
    full = w.invoke("--dry-run", "--json", "--max-changes", "100000")
    count = json_out(full)["to_close"]["total"]
    assert count > 5
    expected = f"the plan closes {count} tasks, more than --max-changes 5"

    result = w.invoke("--yes", "--max-changes", "5")
    assert result.exit_code == 2, result.stderr
    assert expected in result.stderr, result.stderr
    assert f"--max-changes {count}" in result.stderr
    assert w.emu.mutations == []
    assert posts(w) == []
    for mode in (["--dry-run"], ["--save-plan", str(tmp_path / "p1.json")]):
        text = w.invoke(*mode, "--max-changes", "5")
        assert text.exit_code == 0, (mode, text.stderr)
        assert expected in " ".join((text.stdout + text.stderr).split()), (mode, text.stdout)
    for mode in (["--dry-run"], ["--save-plan", str(tmp_path / "p2.json")]):
        doc = json_out(w.invoke(*mode, "--json", "--max-changes", "5"))
        assert doc["exit_code"] == 0
        refusals = doc["guards"]["refusals"]
        assert len(refusals) == 1, refusals
        assert refusals[0].startswith(expected), refusals
    assert w.emu.mutations == []


# ------------------------------------------------------------------ 7. files


def test_files_are_private_and_never_overwritten(world: World, tmp_path: Path):
    stuck_task(world)
    old = os.umask(0)
    try:
        audit, plan = tmp_path / "audit.jsonl", tmp_path / "plan.json"
        assert world.invoke("--dry-run", "--audit-log", str(audit)).exit_code == 0
        assert world.invoke("--save-plan", str(plan)).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    assert stat.S_IMODE(plan.stat().st_mode) == 0o600

    existing = tmp_path / "earlier-run.jsonl"
    existing.write_text("an earlier run's log\n")
    result = world.invoke("--yes", "--audit-log", str(existing))
    assert result.exit_code == 2, result.stderr
    assert one_line(result.stderr), result.stderr
    assert "already exists" in result.stderr
    assert existing.read_text() == "an earlier run's log\n"
    result = world.invoke("--save-plan", str(plan))
    assert result.exit_code == 2, result.stderr
    assert one_line(result.stderr), result.stderr
    assert posts(world) == []
    assert world.emu.mutations == []


# ------------------------------------------------------------------ 8. control characters


def test_control_characters_from_twilio_data_are_escaped(tmp_path: Path):
    emu = Emulator()
    account = emu.add_account(friendly_name="Acme Contact Center")
    workspace = emu.add_workspace(account.sid, friendly_name="Acme\x1b[2J\x07 Support")
    emu.start()
    w = World(emu, account.sid, account.auth_token, workspace.sid, workspace.friendly_name)
    try:
        stuck_task(w, queue="\x1b]0;pwned\x07")
        # No workspace configured: the notice naming the only workspace goes to stderr.
        result = w.invoke("--dry-run", TWILIO_WORKSPACE_SID=None)
        assert result.exit_code == 0, result.stderr
        for stream in (result.stdout, result.stderr):
            assert "\x1b" not in stream
            assert "\x07" not in stream
        assert "Acme\\x1b[2J\\x07 Support" in result.stdout
        assert "\\x1b]0;pwned\\x07" in result.stdout
        assert "\\x1b" in result.stderr
        as_json = w.invoke("--dry-run", "--json", TWILIO_WORKSPACE_SID=None)
        assert as_json.exit_code == 0, as_json.stderr
        assert "\x1b" not in as_json.stdout
        assert "\x07" not in as_json.stdout
        doc = json_out(as_json)  # valid JSON: its own escapes carry the name
        assert doc["workspace"]["friendly_name"] in (
            "Acme\x1b[2J\x07 Support",
            "Acme\\x1b[2J\\x07 Support",
        )
        assert emu.mutations == []
    finally:
        emu.stop()
