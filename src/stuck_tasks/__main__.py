"""``python -m stuck_tasks``."""

from __future__ import annotations

from .cli import main

main()
