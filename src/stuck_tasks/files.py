"""Files the tool creates: private to their owner, never overwritten."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from .errors import ConfigError


def create_private(path: Path, what: str, option: str) -> IO[str]:
    """Open a new file readable by its owner only (0600); never overwrite one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{what} {path} already exists; choose another {option}") from None
    except OSError as error:
        raise ConfigError(f"cannot create {what} {path}: {error.strerror}") from None
    return os.fdopen(fd, "w", encoding="utf-8")
