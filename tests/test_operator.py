"""Issue 14: the operator's experience. twilio-cli profiles, an 80-column terminal, --task that
explains, dry runs as checks, --verbose, --version and --help, the installed command."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import World, json_out, make_world, stuck_tasks_command
from stuck_tasks import __version__
from stuck_tasks.emulator import Faults
from terminal import run_in_terminal, segments

# ------------------------------------------------------------------ an 80-column terminal


def test_a_dry_run_fits_80_columns(outage: World):
    code, screen = run_in_terminal(["--dry-run"], outage.process_env())
    assert code == 0, screen
    assert "Sample of tasks to close" in screen
    widest = max(segments(screen), key=len)
    assert len(widest) <= 80, widest


def test_the_progress_line_fits_names_the_phase_and_never_shows_a_negative_eta():
    w = make_world(Faults(latency=0.01, max_page_size=50), n_tasks=400, seed=5)
    try:
        code, screen = run_in_terminal(
            ["--yes", "--concurrency", "4", "--max-changes", "100000"], w.process_env()
        )
        assert code == 0, screen
        lines = segments(screen)
        progress = [s for s in lines if re.match(r"[a-z ]+: listed \d+", s)]
        assert progress, screen
        assert all(len(s) <= 79 for s in progress)
        assert {s.split(":")[0] for s in progress} <= {
            "listing",
            "examining",
            "examining and closing",
            "closing",
        }
        assert any("closing:" in s for s in progress)
        for line in progress:
            eta = re.search(r"ETA (-?\S+)", line)
            assert eta is None or not eta.group(1).startswith("-")
            if "listed" in line and "+," in line:  # the total is not known yet
                assert eta is None
        assert all(len(s) <= 80 for s in lines)
    finally:
        w.emu.stop()


def test_off_a_terminal_lines_stay_whole(outage: World):
    result = outage.subprocess("--dry-run")
    assert result.returncode == 0, result.stderr
    assert any(len(line) > 80 for line in result.stdout.splitlines())
    assert "\x1b[" not in result.stdout + result.stderr


# ------------------------------------------------------------------ --task explains each task


def test_task_explains_each_task_step_by_step(world: World):
    call = world.emu.add_call(world.account_sid, "completed")
    closed = world.emu.add_task(world.workspace_sid, "pending", "voice", {"call_sid": call})
    live_call = world.emu.add_call(world.account_sid, "in-progress", ended_ago=None)
    live = world.emu.add_task(world.workspace_sid, "assigned", "voice", {"call_sid": live_call})
    result = world.invoke("--yes", "--task", closed, "--task", live, "--task", closed)
    assert result.exit_code == 0, result.stderr
    blocks = result.stdout.split("\n\n")
    assert blocks[0].startswith(f"Task {closed}")
    assert f"looked up   call {call}: completed, ended" in blocks[0]
    assert "verdict     cancel it (call-ended)" in blocks[0]
    assert "applied     closed: pending -> canceled" in blocks[0]
    assert blocks[1].startswith(f"Task {live}")
    assert f"call {live_call}: in-progress" in blocks[1]
    assert "verdict     leave it (call-live)" in blocks[1]
    assert "applied" not in blocks[1]
    assert result.stdout.count(f"Task {closed}") == 1  # a repeated --task is examined once


def test_task_in_json_holds_the_explanation(world: World):
    call = world.emu.add_call(world.account_sid, "busy")
    task = world.emu.add_task(world.workspace_sid, "reserved", "voice", {"call_sid": call})
    doc = json_out(world.invoke("--dry-run", "--json", "--task", task))
    (entry,) = doc["tasks"]
    assert entry["task_sid"] == task
    assert entry["attributes_name"]["call_sid"] == call
    assert entry["evidence"] == [
        {"lookup": f"call {call}", "answer": entry["evidence"][0]["answer"]}
    ]
    assert entry["evidence"][0]["answer"].startswith("busy")
    assert (entry["action"], entry["reason"]) == ("cancel", "call-ended")


# ------------------------------------------------------------------ a dry run is a check


def test_the_detailed_exit_code_says_whether_stuck_tasks_were_found(world: World):
    assert world.invoke("--dry-run", "--detailed-exitcode", "--quiet").exit_code == 0
    call = world.emu.add_call(world.account_sid, "completed")
    world.emu.add_task(world.workspace_sid, "pending", "voice", {"call_sid": call})
    found = world.invoke("--dry-run", "--detailed-exitcode", "--json")
    assert found.exit_code == 4
    doc = json_out(found)
    assert doc["exit_code"] == 4
    assert doc["status"] == "dry-run"
    assert len(doc["tasks"]) == 1
    assert doc["tasks"][0]["evidence"]
    assert world.writes() == []


def test_the_detailed_exit_code_is_for_checks_only(world: World):
    result = world.invoke("--yes", "--detailed-exitcode")
    assert result.exit_code == 2
    assert "Usage:" in result.stderr


# ------------------------------------------------------------------ --verbose, User-Agent


def test_verbose_prints_one_line_per_request_and_no_secret(outage: World):
    result = outage.invoke("--dry-run", "--verbose", "--json")
    assert result.exit_code == 0, result.stderr
    requests = [line for line in result.stderr.splitlines() if " -> " in line]
    assert len(requests) == json_out(result)["api"]["requests_total"]
    assert re.fullmatch(r"GET /v1/Workspaces/WS\w{32} -> 200 in \d+ ms \(try 1\)", requests[0])
    assert outage.auth_token not in result.stderr
    assert "Authorization" not in result.stderr
    assert "Basic " not in result.stderr


def test_every_request_names_stuck_tasks_in_its_user_agent(outage: World):
    assert outage.invoke("--dry-run", "--quiet").exit_code == 0
    agents = {r.user_agent for r in outage.emu.request_log}
    assert len(agents) == 1
    (agent,) = agents
    assert agent.startswith("twilio-python/")
    assert f"stuck-tasks/{__version__}" in agent


# ------------------------------------------------------------------ the sandbox rehearses everything


def test_the_sandbox_rehearses_a_saved_plan_and_task(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "STUCK_TASKS_"))}

    def sandbox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [stuck_tasks_command(), "--sandbox", "--sandbox-seed", "7", "--quiet", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    plan = tmp_path / "plan.json"
    saved = sandbox("--save-plan", str(plan), "--json")
    assert saved.returncode == 0, saved.stderr
    tasks = json.loads(plan.read_text(encoding="utf-8"))["tasks"]
    assert tasks
    applied = sandbox("--apply-plan", str(plan), "--yes", "--json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["closed"] == len(tasks)
    explained = sandbox("--dry-run", "--task", tasks[0]["task_sid"])
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.startswith(f"Task {tasks[0]['task_sid']}")
    assert "verdict     c" in explained.stdout  # cancel it / complete it


# ------------------------------------------------------------------ --version, --help


def test_version_names_the_twilio_library_and_python(world: World):
    result = world.invoke("--version")
    assert result.exit_code == 0
    assert re.fullmatch(
        rf"stuck-tasks {re.escape(__version__)} \(twilio \d+\.\d+\.\d+, click [\d.]+, Python 3\.\d+\.\d+\)\n",
        result.stdout,
    )


def test_help_groups_its_options(world: World):
    result = world.invoke("--help")
    headings = re.findall(r"^([A-Z][A-Za-z ]+):$", result.stdout, re.M)
    assert headings[:7] == [
        "Credentials",
        "Scope",
        "Rules",
        "Safety",
        "Speed",
        "Output",
        "Sandbox and testing",
    ]


# ------------------------------------------------------------------ twilio-cli profiles


def profile_config(tmp: Path, name: str, account: str, key, **extra: str) -> Path:
    config = tmp / "twilio-cli"
    config.mkdir()
    (config / "config.json").write_text(
        json.dumps(
            {
                "activeProject": "other",
                "profiles": {
                    name: {
                        "accountSid": account,
                        "apiKey": key.sid,
                        "apiSecret": key.secret,
                        **extra,
                    },
                    "other": {
                        "accountSid": "AC" + "0" * 32,
                        "apiKey": "SK" + "0" * 32,
                        "apiSecret": "x",
                    },
                },
            }
        ),
        encoding="utf-8",
    )
    return config


def test_a_named_profile_supplies_the_credentials_and_the_header_says_so(
    outage: World, tmp_path: Path
):
    key = outage.emu.add_api_key(outage.account_sid)
    config = profile_config(tmp_path, "prod", outage.account_sid, key)
    audit = tmp_path / "audit.jsonl"
    result = outage.invoke(
        "-p",
        "prod",
        "--yes",
        "--json",
        "--quiet",
        "--audit-log",
        str(audit),
        TWILIO_CONFIG_DIR=str(config),
        TWILIO_ACCOUNT_SID=None,
        TWILIO_AUTH_TOKEN=None,
    )
    assert result.exit_code == 0, result.stderr
    header = json.loads(audit.read_text(encoding="utf-8").splitlines()[0])
    assert header["credentials"].startswith(
        f'API key {key.sid} for account {outage.account_sid}, from twilio-cli profile "prod"'
    )
    assert header["api_key_sid"] == key.sid
    assert key.secret not in audit.read_text(encoding="utf-8") + result.stdout + result.stderr
    assert json_out(result)["closed"] > 0


def test_the_profile_beats_the_environment_and_a_flag_beats_the_profile(
    outage: World, tmp_path: Path
):
    key = outage.emu.add_api_key(outage.account_sid)
    config = profile_config(tmp_path, "prod", outage.account_sid, key)
    env = {"TWILIO_CONFIG_DIR": str(config)}
    # The environment holds a wrong token: the profile's key wins.
    beats_env = outage.invoke(
        "-p", "prod", "--dry-run", "--quiet", TWILIO_AUTH_TOKEN="0" * 32, **env
    )
    assert beats_env.exit_code == 0, beats_env.stderr
    # A flag beats the profile: a wrong token on the command line is used, and refused.
    flag = outage.invoke("-p", "prod", "--dry-run", "--quiet", "--auth-token", "0" * 32, **env)
    assert flag.exit_code == 2
    assert "refused the credentials" in flag.stderr


def test_an_unknown_or_legacy_profile_is_one_clear_line(world: World, tmp_path: Path):
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "config.json").write_text(
        json.dumps({"projects": [{"id": "old", "accountSid": world.account_sid, "region": "us1"}]}),
        encoding="utf-8",
    )
    legacy = world.invoke("-p", "old", "--dry-run", TWILIO_CONFIG_DIR=str(config))
    assert legacy.exit_code == 2
    assert "keychain" in legacy.stderr
    assert len(legacy.stderr.strip().splitlines()) == 1
    unknown = world.invoke("-p", "nope", "--dry-run", TWILIO_CONFIG_DIR=str(config))
    assert unknown.exit_code == 2
    assert 'no twilio-cli profile "nope"' in unknown.stderr
    assert world.emu.request_log == []


@pytest.mark.parametrize("region", ["ie1"])
def test_a_profile_carries_region_and_edge(tmp_path: Path, region):
    from stuck_tasks.emulator import Emulator

    emu = Emulator()
    account = emu.add_account("Dublin", region=region)
    ws = emu.add_workspace(account.sid, "Dublin WS")
    key = emu.add_api_key(account.sid)
    call = emu.add_call(account.sid, "completed")
    task = emu.add_task(ws.sid, "pending", "voice", {"call_sid": call})
    emu.start()
    try:
        config = profile_config(tmp_path, "dub", account.sid, key, region=region, edge="dublin")
        w = World(emu, account.sid, account.auth_token, ws.sid, "Dublin WS")
        result = w.invoke(
            "-p", "dub", "--yes", "--quiet", TWILIO_CONFIG_DIR=str(config), TWILIO_AUTH_TOKEN=None
        )
        assert result.exit_code == 0, result.stderr
        assert emu.task(task).status == "canceled"
        assert {r.host for r in emu.request_log} <= {
            "taskrouter.dublin.ie1.twilio.com",
            "api.dublin.ie1.twilio.com",
        }
    finally:
        emu.stop()
