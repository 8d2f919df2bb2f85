"""Run one command as this process's only child; report its wall time, CPU and peak RSS.

python bench/_one.py OUT_FILE -- COMMAND...   (the child's stdout goes to OUT_FILE)

``getrusage(RUSAGE_CHILDREN)`` is the maximum over all children waited for, so each measured
process gets a fresh wrapper: then ``ru_maxrss`` is that process's own peak RSS.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write(__doc__ or "")
        return 2
    out_file, command = argv[0], argv[2:]
    started = time.perf_counter()
    with open(out_file, "wb") as out:
        code = subprocess.call(command, stdout=out)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = {
        "exit_code": code,
        "wall_seconds": wall,
        "user_seconds": usage.ru_utime,
        "system_seconds": usage.ru_stime,
        "max_rss_kb": usage.ru_maxrss,  # kilobytes on Linux
    }
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
