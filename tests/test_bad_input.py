"""Issue 3: every bad input gets one clear line, a documented exit code, and changes nothing."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from conftest import World, json_out
from stuck_tasks.emulator import Faults


def one_line(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) == 1 and "Traceback" not in text


def stuck_task(world: World) -> str:
    call = world.emu.add_call(world.account_sid, status="completed", ended_ago=timedelta(minutes=9))
    return world.emu.add_task(
        world.workspace_sid, status="pending", channel="voice", attributes={"call_sid": call}
    )


def test_wrong_credentials(world: World):
    stuck_task(world)
    result = world.invoke("--yes", TWILIO_AUTH_TOKEN="0" * 32)
    assert result.exit_code == 2
    assert one_line(result.stderr), result.stderr
    assert "refused the credentials" in result.stderr
    assert world.emu.mutations == []


def test_api_key_without_account_sid(world: World):
    key = world.emu.add_api_key(world.account_sid)
    result = world.invoke(
        "--yes",
        TWILIO_ACCOUNT_SID=None,
        TWILIO_AUTH_TOKEN=None,
        TWILIO_API_KEY=key.sid,
        TWILIO_API_SECRET=key.secret,
    )
    assert result.exit_code == 2
    assert one_line(result.stderr), result.stderr
    assert "TWILIO_ACCOUNT_SID" in result.stderr
    assert world.emu.request_log == []


def test_no_credentials_at_all(world: World):
    result = world.invoke("--yes", TWILIO_ACCOUNT_SID=None, TWILIO_AUTH_TOKEN=None)
    assert result.exit_code == 2
    assert one_line(result.stderr)
    assert "--sandbox" in result.stderr


@pytest.mark.parametrize("workspace", ["WS" + "1" * 32, "Nope"])
def test_unknown_workspace(world: World, workspace: str):
    result = world.invoke("--yes", "--workspace", workspace, TWILIO_WORKSPACE_SID=None)
    assert result.exit_code == 2
    assert one_line(result.stderr), result.stderr
    assert world.emu.mutations == []


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--task", "WT1234"], {}),
        ([], {"TWILIO_ACCOUNT_SID": "AC-not-a-sid"}),
        (["--api-key", "SKxyz", "--api-secret", "s"], {}),
    ],
)
def test_malformed_sids(world: World, args, env):
    result = world.invoke("--yes", *args, **env)
    assert result.exit_code == 2
    assert "SID" in result.stderr
    assert world.emu.request_log == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_api_unreachable_connection_refused(world: World):
    result = world.invoke(
        "--yes", "--deadline", "20s", STUCK_TASKS_BASE_URL=f"http://127.0.0.1:{free_port()}"
    )
    assert result.exit_code == 1
    assert one_line(result.stderr), result.stderr
    assert "cannot connect" in result.stderr


def test_api_unreachable_name_not_resolved(world: World):
    result = world.invoke(
        "--yes", "--deadline", "20s", STUCK_TASKS_BASE_URL="https://no-such-host.invalid"
    )
    assert result.exit_code == 1
    assert one_line(result.stderr), result.stderr
    assert "no-such-host.invalid" in result.stderr


class _HtmlHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>Bad gateway? No: a captive portal.</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(HTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """The tool reads the account and the workspace together and hangs up on the one still
        being answered once the other proves the host wrong: a broken pipe here is no error,
        and socketserver's traceback would land in the stderr under test."""


def test_a_response_that_is_not_json(world: World):
    server = _QuietServer(("127.0.0.1", 0), _HtmlHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = world.invoke(
            "--yes", STUCK_TASKS_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}"
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1
    assert one_line(result.stderr), result.stderr
    assert "not JSON" in result.stderr


def test_html_answers_from_the_emulator_change_nothing(world: World):
    stuck_task(world)
    world.emu.set_faults(Faults(html_rate=1.0))
    result = world.invoke("--yes")
    assert result.exit_code == 1
    assert one_line(result.stderr), result.stderr
    assert world.emu.mutations == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--concurrency", "0"], "--concurrency"),
        (["--grace", "-5m"], "--grace"),
        (["--limit", "0"], "--limit"),
        (["--grace", "soon"], "--grace"),
        (["--timeout", "0"], "--timeout"),
    ],
)
def test_bad_option_values(world: World, args, fragment):
    result = world.invoke("--yes", *args)
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert world.emu.request_log == []


def test_an_env_file_that_does_not_parse(world: World, tmp_path):
    (tmp_path / ".env").write_text('TWILIO_ACCOUNT_SID="AC123\nthis is not a line\n')
    result = world.invoke("--yes")
    assert result.exit_code == 2
    assert ".env" in result.stderr
    assert "does not parse" in result.stderr
    assert world.emu.request_log == []


def test_flag_beats_environment_beats_env_file(world: World, tmp_path):
    task = stuck_task(world)
    (tmp_path / ".env").write_text(
        f"TWILIO_AUTH_TOKEN=wrong-token-from-file\nTWILIO_WORKSPACE_SID={world.workspace_sid}\n"
    )
    # The real environment's (right) token beats the file's.
    result = world.invoke("--dry-run", TWILIO_WORKSPACE_SID=None)
    assert result.exit_code == 0, result.stderr
    # The file fills in what the environment lacks.
    result = world.invoke("--dry-run", TWILIO_AUTH_TOKEN=None, TWILIO_WORKSPACE_SID=None)
    assert result.exit_code == 2
    # A flag beats both.
    result = world.invoke(
        "--yes", "--json", "--auth-token", world.auth_token, TWILIO_AUTH_TOKEN="x" * 32
    )
    assert result.exit_code == 0, result.stderr
    assert json_out(result)["closed"] == 1
    assert world.emu.task(task).status == "canceled"


def test_an_explicit_env_file(world: World, tmp_path):
    stuck_task(world)
    path = tmp_path / "prod.env"
    path.write_text(
        f"TWILIO_ACCOUNT_SID={world.account_sid}\nTWILIO_AUTH_TOKEN={world.auth_token}\n"
    )
    result = world.invoke(
        "--dry-run", "--env-file", str(path), TWILIO_ACCOUNT_SID=None, TWILIO_AUTH_TOKEN=None
    )
    assert result.exit_code == 0, result.stderr


def test_attributes_of_every_wrong_shape_are_left_with_their_reason(world: World):
    for raw in [
        '{"call_sid": "CA',
        "[1,2]",
        "3.5",
        '{"call_sid": 12}',
        '{"call_sid": ["CA"]}',
        "null",
        "",
    ]:
        world.emu.add_task(world.workspace_sid, status="assigned", channel="voice", attributes=raw)
    result = world.invoke("--yes", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json_out(result)
    assert doc["to_close"]["total"] == 0
    assert doc["left"]["total"] == 7
    assert world.emu.mutations == []


def test_proxy_settings_from_the_environment_are_honoured(world: World):
    stuck_task(world)
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    through_proxy = world.invoke("--dry-run", "--deadline", "10s", HTTP_PROXY=dead_proxy)
    assert through_proxy.exit_code == 1
    assert "through proxy" in through_proxy.stderr
    bypassed = world.invoke("--dry-run", HTTP_PROXY=dead_proxy, NO_PROXY="127.0.0.1")
    assert bypassed.exit_code == 0, bypassed.stderr


def test_a_proxy_password_is_never_shown(world: World, tmp_path):
    stuck_task(world)
    port = free_port()
    audit = tmp_path / "audit.jsonl"
    result = world.invoke(
        "--yes", "--deadline", "10s", "--audit-log", str(audit),
        HTTP_PROXY=f"http://alice:pr0xy-s3cret@127.0.0.1:{port}",
    )  # fmt: skip
    assert result.exit_code == 1
    assert f"through proxy 127.0.0.1:{port}" in result.stderr
    shown = result.stdout + result.stderr + (audit.read_text() if audit.exists() else "")
    assert "pr0xy-s3cret" not in shown
    assert "alice" not in shown


def test_a_netrc_entry_for_the_api_host_does_not_break_auth(world: World, tmp_path):
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login someone password something\n")
    result = world.invoke("--dry-run", HOME=str(tmp_path))
    assert result.exit_code == 0, result.stderr
