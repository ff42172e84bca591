"""`--nproc N`: start N ranks of the same ddz command on this machine and watch them.

Each rank is `python -m ddz ARGS` with torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR =
127.0.0.1, a free MASTER_PORT, gloo on the loopback interface). Rank 0's output is forwarded as
it comes, except its one-line error, which waits; every rank's last line is kept. When a rank
fails, the others get a few seconds to stop on their own and are then stopped, and the failure
comes back as one line naming the rank that caused it (the others' errors are consequences).
A rank that hangs (stopped, deadlocked) is the one still running after the others gave up
waiting for it in a collective (--dist-timeout): it is stopped and named as the cause.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ddz.distributed.ranks import TIMED_OUT, RankFailure
from ddz.errors import ConfigError
from ddz.jobs import stop_process
from ddz.threads import available_cores

Forward = Callable[[str, str], None]  # (stream name "stdout" | "stderr", line)
SETTLE_S = 3.0  # how long the other ranks may take to stop by themselves after one failed
USAGE_STATUS = 2  # what the CLI exits with after printing its one-line error
ERROR_PREFIX = "error:"  # how the CLI's one-line error starts
LOOPBACK = ("127.0.0.1", "localhost")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def process_state(pid: int) -> str | None:
    """The state letter Linux gives process `pid` (R running, S sleeping, T stopped, ...)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def rank_environment(
    base: dict[str, str], rank: int, world: int, port: int, threads: int, master: str = "127.0.0.1"
) -> dict[str, str]:
    """torchrun's variables for one rank on this node (every rank here is local)."""
    env = {
        **base,
        "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world),
        "MASTER_ADDR": master, "MASTER_PORT": str(port), "PYTHONUNBUFFERED": "1",
    }
    env.setdefault("OMP_NUM_THREADS", str(threads))
    if master in LOOPBACK:
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo would otherwise bind the hostname's address
    return env


@dataclass
class _Rank:
    rank: int
    proc: subprocess.Popen
    last_line: str = ""
    held: list[str] = field(default_factory=list)  # rank 0's error lines, shown if it was the cause
    stopped_by_us: bool = False
    readers: list[threading.Thread] = field(default_factory=list)


@dataclass(frozen=True)
class LocalRanks:
    """`nproc` ranks on this machine, `threads` CPU threads each (default: the cores this process
    may use, ddz.threads, shared out)."""

    nproc: int
    threads: int | None = None
    settle_s: float = SETTLE_S

    def __post_init__(self) -> None:
        if self.nproc < 1:
            raise ConfigError(f"--nproc must be at least 1, got {self.nproc}")

    def run(self, argv: list[str], forward: Forward, environ: dict[str, str] | None = None) -> int:
        """Run `ddz argv` as nproc ranks until all are done. 0: every rank succeeded; 2: rank 0
        stopped on bad input and has said so itself; otherwise RankFailure names the rank."""
        threads = self.threads or max(1, available_cores() // self.nproc)
        port, base = free_port(), dict(os.environ if environ is None else environ)
        ranks = []
        try:
            for r in range(self.nproc):
                proc = subprocess.Popen(
                    [sys.executable, "-m", "ddz", *argv],
                    env=rank_environment(base, r, self.nproc, port, threads),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                )
                ranks.append(_Rank(r, proc))
                for stream in ("stdout", "stderr"):
                    reader = threading.Thread(
                        target=_read_lines, args=(ranks[-1], stream, forward if r == 0 else None), daemon=True
                    )
                    reader.start()
                    ranks[-1].readers.append(reader)
            return self._wait(ranks, forward)
        finally:
            for rank in ranks:
                if rank.proc.poll() is None:
                    rank.stopped_by_us = True
                    stop_process(rank.proc)

    def _wait(self, ranks: list[_Rank], forward: Forward) -> int:
        while True:
            codes = [rank.proc.poll() for rank in ranks]
            if all(code == 0 for code in codes):
                _drain(ranks)
                return 0
            if any(code not in (None, 0) for code in codes):
                break
            time.sleep(0.1)
        deadline = time.monotonic() + self.settle_s
        while any(rank.proc.poll() is None for rank in ranks) and time.monotonic() < deadline:
            time.sleep(0.1)
        hung = [rank for rank in ranks if rank.proc.poll() is None]
        states = {rank.rank: process_state(rank.proc.pid) for rank in hung}
        for rank in hung:
            rank.stopped_by_us = True
            stop_process(rank.proc)
        _drain(ranks)
        failed = [r for r in ranks if not r.stopped_by_us and r.proc.returncode != 0]
        if hung and failed and all(TIMED_OUT in r.last_line for r in failed):
            # The others gave up waiting in a collective; the rank still running never answered.
            culprit = hung[0]
            how = " (it was stopped by a signal)" if states[culprit.rank] == "T" else ""
            raise RankFailure(
                f"rank {culprit.rank} of {len(ranks)} hung: it did not answer the other ranks within "
                f"--dist-timeout{how}; its last line: {culprit.last_line or '(it printed nothing)'}; "
                "run the same command again to resume from the last checkpoint"
            )
        culprit = min(failed, key=lambda r: (_blame_order(r.proc.returncode), r.rank))
        if culprit.proc.returncode == USAGE_STATUS and ranks[0].proc.returncode == USAGE_STATUS:
            for line in ranks[0].held:
                forward("stderr", line)
            return USAGE_STATUS
        line = culprit.last_line or "(it printed nothing)"
        raise RankFailure(
            f"rank {culprit.rank} of {len(ranks)} {describe_exit(culprit.proc.returncode)}; its last line: "
            f"{line}; run the same command again to resume from the last checkpoint"
        )


def _blame_order(returncode: int) -> int:
    """Which failure caused the others: a killed rank, then a crash, then a one-line error."""
    if returncode < 0:
        return 0
    return 2 if returncode == USAGE_STATUS else 1


def _read_lines(rank: _Rank, stream: str, forward: Forward | None) -> None:
    for line in getattr(rank.proc, stream):
        line = line.rstrip("\n")
        if line.strip():
            rank.last_line = line.strip()
        if forward is not None and stream == "stderr" and line.startswith(ERROR_PREFIX):
            rank.held.append(line)
        elif forward is not None:
            forward(stream, line)


def _drain(ranks: list[_Rank]) -> None:
    for rank in ranks:
        for reader in rank.readers:
            reader.join(timeout=5)
