"""`python -m ddz.jobs.worker SPEC.json`: a local worker process. SPEC names the function
(`module:name`) and its arguments; a ddz error ends the worker with its one line on stderr and
status 2, anything else with its traceback (both land in the job's log)."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ddz.errors import DDZError

USAGE_STATUS = 2


def find_function(target: str) -> Callable[..., Any]:
    """`"package.module:name"` -> the function."""
    module, _, name = target.partition(":")
    found: Any = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    return found


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    function = find_function(spec["function"])
    try:
        function(*spec["args"])
    except DDZError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_STATUS
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
