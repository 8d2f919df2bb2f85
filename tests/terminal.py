"""Run the installed command on a pseudo-terminal of its own, as a person at a shell would."""

from __future__ import annotations

import fcntl
import os
import platform
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path

from conftest import stuck_tasks_command

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}.get(platform.machine())


def wait_until_reading_its_terminal(pid: int) -> None:
    """Wait until ``pid`` is blocked reading its standard input, as it is when a person types.

    A key typed in the instant the prompt appears can beat ``input()`` to its ``read()``: the
    signal then waits for the next line (a CPython race, not what a person at the prompt
    meets), so keys are typed only once the command is waiting."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            call = Path(f"/proc/{pid}/syscall").read_text().split()
        except OSError:
            time.sleep(0.5)  # no /proc: a pause stands in
            return
        if READ_SYSCALL is None:
            time.sleep(0.5)
            return
        if call[:2] == [READ_SYSCALL, "0x0"]:
            return
        time.sleep(0.01)
    raise AssertionError("the command never waited for an answer on its terminal")


def run_in_terminal(
    args: list[str],
    env: dict[str, str],
    *,
    columns: int = 80,
    keys: bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 90,
    at_question: Callable[[], None] | None = None,
) -> tuple[int, str]:
    """(exit code, screen) of the command on a terminal of ``columns`` columns that is its
    controlling terminal (so Ctrl-C is a SIGINT from the line discipline); ``keys`` are typed
    at the ``[y/N]`` question, after ``at_question`` ran (what happens while a person reads the
    plan)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}

    def take_the_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        # As for a person's shell: a test run started in the background (``pytest &`` in a
        # script) passes SIGINT and SIGQUIT on ignored, and Ctrl-C would then do nothing.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)

    proc = subprocess.Popen(
        [stuck_tasks_command(), *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        cwd=cwd,
        close_fds=True,
        start_new_session=True,
        preexec_fn=take_the_terminal,
    )
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            readable, _, _ = select.select([controller], [], [], 0.2)
            if not readable:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the command exited and the terminal closed
                break
            if not chunk:
                break
            seen += chunk
            if keys is not None and b"[y/N]" in seen:
                wait_until_reading_its_terminal(proc.pid)
                if at_question is not None:
                    at_question()
                os.write(controller, keys)
                keys = None
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"the command did not end: {seen.decode(errors='replace')[-1500:]}"
        ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    return code, seen.decode(errors="replace")


def segments(screen: str) -> list[str]:
    """What the terminal shows, piece by piece: lines split at newlines and carriage returns."""
    return [ANSI.sub("", part) for part in re.split(r"\r\n|\n|\r", screen)]
