"""The fault matrix as a table: every emulator knob alone, then combined, with three invariants.

    python bench/fault_matrix.py

Runs each scenario of tests/fault_scenarios.py (a seeded post-outage workspace of several pages,
the real command over real HTTP against the emulator, then a clean second run) and prints one
Markdown row per scenario. The invariants column is PASS when all three hold:

1. zero wrong closures, ever;
2. every stuck task is closed once the faults are transient (the clean second run);
3. the summary and --json agree exactly with the emulator's final state.

Exits 1 if any scenario fails; what went wrong is printed below the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fault_scenarios import SCENARIOS, Row, run_scenario

COLUMNS = (
    "scenario",
    "stuck tasks",
    "closed",
    "wrongly closed",
    "retries",
    "429s seen",
    "wall time (s)",
    "invariants",
)

ALIGN = ("---", "---:", "---:", "---:", "---:", "---:", "---:", ":---:")


def failures(row: Row) -> list[str]:
    """Why a row fails its invariants (empty when it passes)."""
    found = []
    if row.wrongly_closed:
        found.append(f"wrongly closed: {', '.join(row.wrongly_closed)}")
    if row.left_stuck:
        found.append(f"left stuck after a clean run: {', '.join(row.left_stuck)}")
    if not row.summary_matches:
        found.append("the summary does not match the emulator's writes")
    if row.exit_code != 0:
        found.append(f"exit code {row.exit_code}")
    found += row.problems
    return found


def markdown_row(cells: tuple[object, ...]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> int:
    print(markdown_row(COLUMNS))
    print(markdown_row(ALIGN))
    failed: dict[str, list[str]] = {}
    for name, faults in SCENARIOS.items():
        row = run_scenario(name, faults)
        problems = failures(row)
        if problems:
            failed[name] = problems
        print(
            markdown_row(
                (
                    row.scenario,
                    row.stuck,
                    row.closed,
                    len(row.wrongly_closed),
                    row.retries,
                    row.throttled,
                    f"{row.wall:.2f}",
                    "FAIL" if problems else "PASS",
                )
            ),
            flush=True,
        )
    for name, problems in failed.items():
        print(f"\n{name}:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
