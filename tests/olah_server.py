"""Test helpers for the hub: a real olah server (a self-hosted Hugging Face mirror, offline mode) on
127.0.0.1 serving the git repos of a temp mirrors folder, and tiny zoos to publish through it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ddz.nets import build_net
from ddz.zoo.records import SnapshotMeta, SnapshotName
from ddz.zoo.sources.local import LocalZoo, SnapshotRecord

READY_SECONDS = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Olah:
    url: str  # the HF_ENDPOINT
    mirrors: Path  # <mirrors>/models/<org>/<repo> are served as repo <org>/<repo>

    def org_folder(self, org: str) -> Path:
        """A hub folder (in ddz's sense) whose repos this server serves as ORG/NAME."""
        return self.mirrors / "models" / org


def _olah_cli() -> str:
    beside = Path(sys.executable).with_name("olah-cli")
    found = str(beside) if beside.is_file() else shutil.which("olah-cli")
    if not found:
        raise RuntimeError("olah-cli is not installed in this environment (pip install olah)")
    return found


@contextmanager
def running_olah(folder: Path) -> Iterator[Olah]:
    """Start olah on a free port, wait (bounded) until it answers, and stop it afterwards."""
    port = free_port()
    mirrors, cache, logs = folder / "mirrors", folder / "olah-cache", folder / "logs"
    for path in (mirrors / "models", cache, logs):
        path.mkdir(parents=True, exist_ok=True)
    config = folder / "olah.toml"
    config.write_text(
        "[basic]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f'repos-path = "{cache}"\n'
        'mirror-scheme = "http"\n'
        f'mirror-netloc = "127.0.0.1:{port}"\n'
        f'mirror-lfs-netloc = "127.0.0.1:{port}"\n'
        f'mirrors-path = ["{mirrors}"]\n'
        "[accessibility]\n"
        "offline = true\n"
    )
    log = open(folder / "olah.out", "wb")  # noqa: SIM115 (closed below, after the process)
    process = subprocess.Popen(
        [_olah_cli(), "-c", str(config), "--log-path", str(logs)],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if process.poll() is not None:
                tail = (folder / "olah.out").read_text()[-2000:]
                raise RuntimeError(f"olah exited with {process.returncode}: {tail}")
            try:
                urllib.request.urlopen(f"{url}/api/models/probe/probe/refs", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # any HTTP answer (401/404) means it is serving
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"olah did not answer on {url} within {READY_SECONDS:.0f} s") from None
                time.sleep(0.1)
        yield Olah(url, mirrors)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def save_snapshot(store: LocalZoo, name: SnapshotName, net, metrics: dict[str, float] | None = None,
                  recipe: dict | None = None, mean: float = 0.5, std: float = 0.25) -> SnapshotRecord:
    """A snapshot of `net` for a 10-class, 1-channel data set, saved through the store."""
    meta = SnapshotMeta(
        name=name, data_source=name.dataset, net_config=dict(net.config),
        classes=tuple(str(i) for i in range(10)),
        mean=(mean,), std=(std,), metrics=dict(metrics or {}), recipe=dict(recipe or {}), recipe_hash="test",
        data_fingerprint="test", ddz_version="test", created="2023-11-14T22:13:20Z",
    )
    return store.save(meta, net.state_dict())


def make_zoo(
    root: Path,
    dataset: str = "digits",
    archs: Iterable[str] = ("convnet3",),
    seeds: Iterable[int] = (0, 1),
    epochs: Iterable[int] = (1, 4),
    salt: int = 0,
) -> dict[str, Path]:
    """A tiny zoo (width-8 nets, 1 channel, 16 px) saved through LocalZoo; name -> file.

    `salt` changes every weight, so that a re-made zoo has the same names and different bytes.
    test_acc rises with the epoch and with the seed, so @best and --where have known answers.
    """
    store = LocalZoo(root)
    files = {}
    for arch in archs:
        for seed in seeds:
            for epoch in epochs:
                net = build_net(arch, 1, 10, 16, generator_seed=salt * 100_003 + seed * 1000 + epoch, width=8)
                name = SnapshotName(dataset, arch, seed, epoch)
                metrics = {"train_loss": round(1 / (epoch + 1), 4), "train_acc": round(0.1 * epoch, 4),
                           "test_acc": round(0.5 + 0.01 * epoch + 0.001 * seed, 4)}
                record = save_snapshot(store, name, net, metrics, {"epochs": max(epochs)})
                files[str(name)] = record.path
    return files
