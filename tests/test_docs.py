"""The README's promises: its first screen, its options block, and CI running its test command."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from stuck_tasks.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
INSTALL_AND_RUN = "pipx install . && stuck-tasks --sandbox"
TEST_COMMAND = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' "
    "&& python -m pytest -n 2"
)


def first_code_block(text: str) -> list[str]:
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_first_screen_holds_exactly_the_two_setup_commands():
    first_screen = "\n".join(README.splitlines()[:25])
    assert first_code_block(first_screen) == [INSTALL_AND_RUN, TEST_COMMAND]


def test_ci_runs_the_readme_test_command_and_the_sandbox():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "\npython -m pytest -n 2\n" in ci
    assert "stuck-tasks --sandbox" in ci


def test_readme_options_block_matches_help(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    result = CliRunner().invoke(cli, ["--help"], terminal_width=100, env={"COLUMNS": "100"})
    assert result.exit_code == 0
    help_options = result.stdout[
        result.stdout.index("Credentials:") : result.stdout.index("  Exit codes:")
    ].rstrip()
    start = README.index("```text\nCredentials:\n") + len("```text\n")
    readme_options = README[start : README.index("```", start)].rstrip()
    assert readme_options == help_options, (
        "README's options block is stale: regenerate it from --help"
    )


def test_every_option_has_help_and_every_variable_is_in_env_example():
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    for param in cli.params:
        if param.name in {"help", "version"}:
            continue
        assert getattr(param, "help", None), param.name
        for var in [param.envvar] if isinstance(param.envvar, str) else param.envvar or []:
            assert f"\n{var}=\n" in example, var


def test_help_lists_every_exit_code():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = re.findall(r"^\s+(\d+)\s{2,}\S", result.stdout.split("Exit codes:")[1], re.M)
    assert listed == ["0", "1", "2", "3", "4", "130"]
