"""The demo's PTM pool: each PTM listed with the test accuracy its snapshot recorded, and the
default pool well trained (docs/zoo.md, "The demo's PTM pool")."""

from __future__ import annotations

import pytest

from ddz.demo import DATASET, DemoConfig, ptm_entries, ptm_table, train_zoo
from ddz.progress import NullProgress
from ddz.zoo.api import Zoo
from ddz.zoo.paths import ZooPaths
from ddz.zoo.sources.local import read_snapshot_meta


def demo_zoo(tmp_path) -> Zoo:
    return Zoo(ZooPaths.under(tmp_path / "home", registry=tmp_path / "registry.yaml"))


def final_snapshots(zoo: Zoo, config: DemoConfig) -> dict[str, dict[str, float]]:
    """name -> the metrics each final snapshot recorded, read from the local zoo's files."""
    root = zoo.paths.zoo / DATASET
    return {
        str(meta.name): meta.metrics
        for meta in (
            read_snapshot_meta(root / arch / f"seed{seed}" / f"epoch{config.zoo_epochs}.safetensors")
            for arch in config.archs
            for seed in range(config.seeds)
        )
    }


def test_quick_demo_lists_each_ptm_with_the_test_accuracy_its_snapshot_recorded(tmp_path, digits) -> None:
    config = DemoConfig.quick()
    zoo = demo_zoo(tmp_path)
    train_zoo(zoo, config, digits, "cpu", NullProgress())
    zoo.push(f"{DATASET}/*/*", str(tmp_path / "hub"))
    pulled = zoo.pull(config.ptm_query)  # through the hub, as the demo does

    entries = ptm_entries(pulled)
    recorded = final_snapshots(zoo, config)
    assert [e["name"] for e in entries] == list(recorded)
    table = "\n".join(ptm_table(entries))
    assert table.splitlines()[0] == "| name | test accuracy (%) | sha256 |"
    for entry in entries:
        assert entry["test_acc"] == recorded[entry["name"]]["test_acc"]  # read, not recomputed
        assert 0.0 <= entry["test_acc"] <= 1.0
        assert f"| {entry['name']} | {100 * entry['test_acc']:.2f} | `{entry['sha256']}` |" in table


def test_a_ptm_without_a_recorded_accuracy_shows_a_dash() -> None:
    table = ptm_table([{"name": "digits/convnet3/seed0@epoch1", "sha256": "ab" * 32, "test_acc": None}])
    assert f"| digits/convnet3/seed0@epoch1 | - | `{'ab' * 32}` |" in table


@pytest.mark.slow
def test_the_default_demo_pool_is_well_trained(tmp_path, digits) -> None:
    """Every PTM of the default demo beats chance (10 %) by far, and its logits are not flat
    (train loss well below ln 10 = 2.30, where convnet4 on 16px digits used to stay)."""
    config = DemoConfig()
    zoo = demo_zoo(tmp_path)
    train_zoo(zoo, config, digits, "cpu", NullProgress())
    recorded = final_snapshots(zoo, config)
    assert len(recorded) == len(config.archs) * config.seeds
    for name, metrics in recorded.items():
        assert metrics["test_acc"] > 0.9, (name, metrics)
        assert metrics["train_loss"] < 0.5, (name, metrics)
