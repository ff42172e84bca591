"""docs/api.md's complete example runs as written, and prints what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains a zoo, distils, evaluates: about a minute

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, "docs/api.md should hold one complete example"
    return blocks[0]


def test_the_api_example_runs_as_written(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(example())
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"DM \+ CLoM: \d+\.\d\d ± \d+\.\d\d % over 2 models", lines[0])
    assert re.fullmatch(r"random real: \d+\.\d\d %", lines[1])
    assert lines[3] == "PTMs ['digits/convnet3/seed0@epoch4', 'digits/convnet3/seed1@epoch4']"
