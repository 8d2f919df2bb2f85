"""Shared fixtures: an isolated environment, a running emulator, and ways to run the tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from stuck_tasks.cli import cli
from stuck_tasks.emulator import Emulator, Faults, SeedReport, seed_outage

PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
REASON_PREFIX = "Orchestration issue: closed stuck voice Task. (stuck-tasks run "


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No TWILIO_* from the developer's shell, no stray .env, a fresh working directory."""
    for name in list(os.environ):
        if name.startswith(("TWILIO_", "STUCK_TASKS_")) or name.lower() in PROXY_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@dataclass
class World:
    """A running emulator with one account and workspace, and helpers to run the tool on it."""

    emu: Emulator
    account_sid: str
    auth_token: str = field(repr=False)
    workspace_sid: str
    workspace_name: str
    seed: SeedReport | None = None

    def env(self, **extra: str | None) -> dict[str, str | None]:
        values: dict[str, str | None] = {
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
            "TWILIO_WORKSPACE_SID": self.workspace_sid,
            "STUCK_TASKS_BASE_URL": self.emu.base_url,
            "TWILIO_API_KEY": None,
            "TWILIO_API_SECRET": None,
            "TWILIO_REGION": None,
            "TWILIO_EDGE": None,
        }
        values.update(extra)
        return values

    def invoke(self, *args: str, input: str | None = None, **env: str | None) -> Result:
        """Run the command in-process through click's CliRunner."""
        return CliRunner().invoke(
            cli, list(args), env=self.env(**env), input=input, catch_exceptions=False
        )

    def process_env(self, **env: str | None) -> dict[str, str]:
        """The environment for a subprocess: this machine's, minus TWILIO_*, plus this world's."""
        full = {
            k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "STUCK_TASKS_"))
        }
        full.update({k: v for k, v in self.env(**env).items() if v is not None})
        return full

    def subprocess(
        self, *args: str, timeout: float = 120, **env: str | None
    ) -> subprocess.CompletedProcess[str]:
        """Run the installed console script, as a person would."""
        return subprocess.run(
            [stuck_tasks_command(), *args],
            env=self.process_env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def writes(self) -> list[Any]:
        return [r for r in self.emu.request_log if r.method == "POST"]

    def statuses(self) -> dict[str, str]:
        return {t.sid: t.status for t in self.emu.tasks(self.workspace_sid)}


def stuck_tasks_command() -> str:
    """The console script installed next to this interpreter."""
    candidate = Path(sys.executable).with_name("stuck-tasks")
    return str(candidate) if candidate.exists() else "stuck-tasks"


def make_world(
    faults: Faults | None = None, *, n_tasks: int = 0, seed: int = 0, **seed_args: Any
) -> World:
    emu = Emulator(faults)
    account = emu.add_account(friendly_name="Acme Contact Center")
    workspace = emu.add_workspace(account.sid, friendly_name="Acme Support")
    report = (
        seed_outage(emu, account.sid, workspace.sid, n_tasks=n_tasks, seed=seed, **seed_args)
        if n_tasks
        else None
    )
    emu.start()
    return World(
        emu, account.sid, account.auth_token, workspace.sid, workspace.friendly_name, report
    )


@pytest.fixture
def world() -> Iterator[World]:
    """An empty workspace; tests add the tasks they need."""
    w = make_world()
    yield w
    w.emu.stop()


@pytest.fixture
def outage() -> Iterator[World]:
    """A seeded post-outage workspace (every row of the decision table), several short pages."""
    w = make_world(Faults(max_page_size=100), n_tasks=300, seed=7)
    yield w
    w.emu.stop()


def json_out(result: Result | subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(result.stdout)
