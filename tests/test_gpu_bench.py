"""bench/gpu.py --quick: the GPU bench at tiny shapes on this machine's CPU, so that it keeps
working between device sessions; its JSON has every row, and every equality check passed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a subprocess that times every row: make test runs it, make check does not
def test_quick_bench_writes_its_table_and_passes_its_checks(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--quick", "--device", "cpu",
                           "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    for key in ("device", "device_name", "torch", "date", "quick", "shapes", "seconds_total"):
        assert key in result
    assert result["quick"] is True and result["device"] == "cpu" and result["checks_passed"] is True
    methods = {row["method"]: row for row in result["methods"]}
    assert sorted(methods) == ["dc", "dm", "dsa"]
    for row in methods.values():
        assert row["loss_rel_diff"] <= 1e-5
        assert {"reference", "ddz", "ddz-bf16"} <= set(row["seconds"]) and row["ratio"] > 0
    (mtt,) = result["mtt"]["rows"]
    assert set(mtt["seconds"]) == {"reference", "unrolled", "constant"}
    assert max(mtt["loss_rel_diff"].values()) <= 1e-5
    assert [row["models"] for row in result["eval"]] == [1, 2]
    for row in result["eval"]:
        for name in ("reference", "sequential", "batched", "graphed", "bf16"):
            assert row[f"{name}_s_per_epoch"] > 0
        assert max(row["check"][k] for k in ("loss_rel_diff", "weights_rel_diff",
                                              "graphed_weights_rel_diff")) <= 1e-5
    assert result["zoo"]["reference_s"] > 0 and result["zoo"]["batched_s"] > 0
    table = (tmp_path / "gpu.md").read_text()
    assert result["device_name"] in table and result["torch"] in table and "| DM iteration |" in table
