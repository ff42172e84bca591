"""Wall time of CLI commands that should start at once: `ddz --help` (and, for the record,
`ddz zoo list`), each run `--reps` times in a fresh process; median and all runs.

    .venv/bin/python bench/cli_startup.py [--reps 5] [--json FILE]

`ddz --help` imports neither torch nor timm (the command modules import them in their bodies);
the bench also reports whether torch was imported, read from `python -X importtime`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {"ddz --help": ["--help"], "ddz zoo list": ["zoo", "list"]}


def run_once(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ddz", *args], env=env, capture_output=True, check=True)
    return time.perf_counter() - started


def imports_torch(args: list[str], env: dict[str, str]) -> bool:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "ddz", *args], env=env,
                          capture_output=True, text=True, check=True)
    return any(line.split("|")[-1].strip() == "torch" for line in done.stderr.splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", dest="json_path", default=None)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "DDZ_HOME": home, "COLUMNS": "100"}
        for name, command in COMMANDS.items():
            times = [run_once(command, env) for _ in range(args.reps)]
            results[name] = {"median_s": statistics.median(times), "all_s": times,
                             "imports_torch": imports_torch(command, env)}
            print(f"{name:>14}: median {statistics.median(times):.3f} s over {args.reps} runs "
                  f"(torch imported: {results[name]['imports_torch']})")
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
