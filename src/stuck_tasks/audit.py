"""The JSON Lines audit log: a header, one line per examined task as it settles, a footer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError


class AuditLog:
    """Append-only, flushed line by line, so an interrupted run leaves a valid partial log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file: IO[str] | None = path.open("x", encoding="utf-8")
        except FileExistsError:
            raise ConfigError(
                f"audit log {path} already exists; choose another --audit-log"
            ) from None
        except OSError as error:
            raise ConfigError(f"cannot create audit log {path}: {error.strerror}") from None

    def write(self, line: dict[str, Any]) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(line, sort_keys=True, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_audit(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """Read an audit log back: (header, task lines, footer or None for a partial log)."""
    header: dict[str, Any] | None = None
    footer: dict[str, Any] | None = None
    tasks: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            raise ConfigError(
                f"{path}:{number}: not a JSON line; is this a stuck-tasks audit log?"
            ) from None
        kind = line.get("type") if isinstance(line, dict) else None
        if kind == "header":
            header = line
        elif kind == "task":
            tasks.append(line)
        elif kind == "footer":
            footer = line
        else:
            raise ConfigError(
                f"{path}:{number}: unknown line type; is this a stuck-tasks audit log?"
            )
    if header is None:
        raise ConfigError(f"{path} has no header line; is this a stuck-tasks audit log?")
    return header, tasks, footer
