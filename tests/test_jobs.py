"""ddz.jobs on its own: work runs in local worker processes through the pool (status, one-line
error and log tail), leaving the pool stops what still runs, and the cluster options' texts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ddz.cli.cluster import cluster_options, parse_memory, parse_time
from ddz.errors import ConfigError
from ddz.jobs import ClusterOptions, Handle, LocalWorkers, Work, run_pool

TESTS = Path(__file__).resolve().parent


def leave_status(path: str, text: str) -> None:
    Path(path).write_text(json.dumps({"status": text}))


def fail(message: str) -> None:
    raise ConfigError(message)


@pytest.fixture
def importable_tests(monkeypatch):
    """Workers import this module's functions by name: put tests/ on their path."""
    paths = [str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))


def test_work_must_be_importable_by_name(tmp_path):
    with pytest.raises(ConfigError, match="cannot run in a worker"):
        Work("inline", lambda: None, (), tmp_path / "status.json")
    assert Work("ok", leave_status, (), tmp_path / "s").target == "test_jobs:leave_status"


def test_local_pool_reports_each_status_or_why_there_is_none(tmp_path, importable_tests):
    stale = tmp_path / "ok.json"
    stale.write_text('{"status": "from an earlier attempt"}')
    works = [
        Work("ok", leave_status, (str(stale), "fine"), stale),
        Work("bad", fail, ("no such thing; do this",), tmp_path / "cells" / "bad.json"),
    ]
    started: list[str] = []
    ended = {e.work.key: e for e in run_pool(works, LocalWorkers(tmp_path / "jobs"), limit=1, poll_s=0.05,
                                             on_start=lambda work: started.append(work.key))}
    assert started == ["ok", "bad"]
    assert ended["ok"].status == {"status": "fine"}
    assert ended["bad"].status is None and ended["bad"].reason == "worker exited with status 2"
    assert ended["bad"].log_tail() == "error: no such thing; do this"
    assert (tmp_path / "cells").is_dir()  # the status file's folder is made before the start


class Stop(Exception):
    pass


def test_leaving_the_pool_stops_the_workers_still_running(tmp_path):
    backend = LocalWorkers(tmp_path)
    handles: list[Handle] = []
    start = backend.start
    backend.start = lambda work, slot: handles.append(start(work, slot)) or handles[-1]  # type: ignore[method-assign]
    polls = []

    def poll(work: Work) -> None:
        polls.append(work.key)
        if len(polls) == 3:
            raise Stop

    works = [Work(f"sleep{n}", time.sleep, (60,), tmp_path / f"{n}.json") for n in range(3)]
    began = time.monotonic()
    with pytest.raises(Stop):
        list(run_pool(works, backend, limit=2, poll_s=0.05, on_poll=poll))
    assert len(handles) == 2  # the limit held
    assert all(h.process is not None and h.process.poll() is not None for h in handles)
    assert time.monotonic() - began < 30


@pytest.mark.parametrize("text, minutes", [
    ("90", 90), ("4:00:00", 240), ("1:30", 90), ("0:00:30", 1), ("0:10:01", 11), ("1-12", 2160),
])
def test_time_texts(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text, gigabytes", [("16", 16.0), ("16G", 16.0), ("2048M", 2.0), ("1T", 1024.0),
                                             ("8gb", 8.0)])
def test_memory_texts(text, gigabytes):
    assert parse_memory(text) == gigabytes


@pytest.mark.parametrize("text", ["4h", "1:xx", ""])
def test_bad_time_is_one_line(text):
    with pytest.raises(ConfigError, match=r"bad --time .*; use minutes"):
        parse_time(text)


def test_cluster_options_reach_submitit_by_its_names():
    options = cluster_options("gpu", 1, 4, "2:00:00", "16G")
    assert options == ClusterOptions("gpu", 1, 4, 120, 16.0)
    assert options.executor_parameters() == {
        "timeout_min": 120, "slurm_partition": "gpu", "gpus_per_node": 1, "cpus_per_task": 4, "mem_gb": 16.0,
    }
    assert cluster_options().executor_parameters() == {"timeout_min": 240}
    with pytest.raises(ConfigError, match="--time must be at least 1 minute"):
        cluster_options(time_limit="0")
    with pytest.raises(ConfigError, match="--mem must be more than 0"):
        cluster_options(mem="0G")
