"""`ddz demo --quick` end to end: the whole flow through the real console script."""

from __future__ import annotations

import json
import re

import pytest
from safetensors import safe_open

from ddz.io import sha256_file

pytestmark = pytest.mark.slow  # end to end (make check leaves it out)


@pytest.mark.timeout(1200)  # two demo runs: about 2.5 minutes on one quiet core, several when loaded
def test_demo_quick_end_to_end(run_ddz, tmp_path) -> None:
    out = tmp_path / "demo"
    result = run_ddz("demo", "--quick", "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for method in ("random real", "DM", "DM + CLoM", "DM, soft labels"):
        assert method in result.stdout

    report = (out / "report.md").read_text()
    data = json.loads((out / "report.json").read_text())
    assert [row["method"] for row in data["rows"]] == ["random real", "DM", "DM + CLoM", "DM, soft labels"]
    soft = data["rows"][3]
    assert soft["labels"].startswith("soft (digits/") and f"| {soft['scores']['lrs']:.4f} |" in report
    for row in data["rows"]:
        # Each row's accuracy is printed in the markdown table exactly as measured.
        assert f"{100 * row['mean']:.2f} ± {100 * row['std']:.2f}" in report
        assert 0.0 <= row["mean"] <= 1.0 and len(row["accs"]) == data["config"]["eval_models"]

    # The guided run used the chosen snapshot of every arch x seed, pulled back through the hub.
    epoch = data["config"]["ptm_epoch"] or data["config"]["zoo_epochs"]
    names = [p["name"] for p in data["ptms"]]
    assert names == [
        f"digits/{arch}/seed{seed}@epoch{epoch}" for arch in data["config"]["archs"] for seed in range(3)
    ]
    for ptm in data["ptms"]:
        # Each PTM is listed with the test accuracy its snapshot recorded.
        assert 0.0 <= ptm["test_acc"] <= 1.0
        assert f"| {ptm['name']} | {100 * ptm['test_acc']:.2f} | `{ptm['sha256']}` |" in report
        arch, seed = re.match(r"digits/(\w+)/seed(\d)@", ptm["name"]).groups()
        snapshot = out / "home" / "zoo" / "digits" / arch / f"seed{seed}" / f"epoch{epoch}.safetensors"
        assert sha256_file(snapshot) == ptm["sha256"]

    # The report states the effect of guidance with both stds, and where alpha came from.
    rows = {row["method"]: row for row in data["rows"]}
    gain = 100 * (rows["DM + CLoM"]["mean"] - rows["DM"]["mean"])
    assert data["guidance_effect"] == rows["DM + CLoM"]["mean"] - rows["DM"]["mean"]
    assert f"{gain:+.2f} points" in report and f"{gain:+.2f} points" in result.stdout
    assert data["alpha_source"] in report and str(data["alpha"]) in report
    archs = sorted(data["config"]["archs"])
    assert sorted(data["pushed_revisions"]) == [f"hub/digits-{arch}" for arch in archs]

    # PNG grids of both synthetic sets sit beside the report, and the report links them.
    for grid in ("dm.png", "dm-clom.png"):
        assert (out / grid).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({grid})" in report
    # The synthetic sets themselves are saved with their guidance recorded.
    with safe_open(str(out / "runs" / "dm-clom" / "synset.safetensors"), "pt") as handle:
        meta = handle.metadata()
    assert f"digits/*/*@epoch{epoch}" in json.dumps(meta)

    # A re-run reuses the zoo and the hub commits, and the numbers repeat (same seed).
    zoo_file = out / "home" / "zoo" / "digits" / "convnet3" / "seed0" / "epoch2.safetensors"
    trained_at = zoo_file.stat().st_mtime_ns
    again = run_ddz("demo", "--quick", "--out", str(out), timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads((out / "report.json").read_text())
    assert zoo_file.stat().st_mtime_ns == trained_at
    assert rerun["pushed_revisions"] == data["pushed_revisions"]
    assert [row["accs"] for row in rerun["rows"]] == [row["accs"] for row in data["rows"]]
