"""stuck-tasks: close TaskRouter tasks whose voice call already ended."""

from __future__ import annotations

__version__ = "0.2.0"
