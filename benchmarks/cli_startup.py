"""How long `emocloak --help` takes: the commands import torch only when they run (issue 35).

    python benchmarks/cli_startup.py [--runs 5] [--out benchmarks/results/cli_startup.md]

Each command runs as a fresh process, as a user's shell starts it; the median of --runs is reported
next to that of `python -c pass`, timed in the same run, so that a loaded machine shows as a ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("emocloak")  # the console script, as users run it
EMOCLOAK = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "emocloak"]
CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "emocloak --help": [*EMOCLOAK, "--help"],
    "emocloak protect --help": [*EMOCLOAK, "protect", "--help"],
}


def median_seconds(cmd: list[str], runs: int) -> float:
    """Median wall time of `runs` fresh processes (after one untimed run that warms the file cache)."""
    subprocess.run(cmd, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report(medians: dict[str, float], runs: int, command: str) -> str:
    base = medians["python -c pass"]
    rows = [f"| `{name}` | {s * 1000:.0f} | {s / base:.1f} |" for name, s in medians.items()]
    return "\n".join(
        [
            "# CLI start-up time",
            "",
            f"Command: `{command}` ({platform.machine()}, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f} at the end, Python {platform.python_version()}).",
            f"Median wall time of {runs} fresh processes each; the ratio is to `python -c pass` timed in the same run.",
            "",
            "| command | median ms | × python -c pass |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cli_startup.md")
    args = ap.parse_args()
    medians = {name: median_seconds(cmd, args.runs) for name, cmd in CASES.items()}
    command = "python benchmarks/cli_startup.py" + (f" --runs {args.runs}" if args.runs != 5 else "")
    text = report(medians, args.runs, command)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
