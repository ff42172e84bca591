"""Worker processes on this machine: `python -m ddz.jobs.worker SPEC.json`, one per job, output to
a log in the pool's folder; on GPUs each slot gets its own `CUDA_VISIBLE_DEVICES`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ddz.io import atomic_write_json
from ddz.jobs.work import Ended, Handle, Work, prepare_status, read_status


class LocalWorkers:
    """Starts each job as a worker process; `gpus` > 0 deals the slots over that many GPUs."""

    def __init__(self, folder: Path, gpus: int = 0):
        self.folder, self.gpus = Path(folder), gpus
        self.folder.mkdir(parents=True, exist_ok=True)

    def start(self, work: Work, slot: int) -> Handle:
        spec = self.folder / f"{work.key}.json"
        log = self.folder / f"{work.key}.log"
        prepare_status(work)
        atomic_write_json(spec, {"function": work.target, "args": list(work.args)})
        env = dict(os.environ)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % self.gpus)
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "ddz.jobs.worker", str(spec)],
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        return Handle(work, log, process=process)

    def finished(self, handle: Handle) -> bool:
        return handle.process is None or handle.process.poll() is not None

    def ended(self, handle: Handle) -> Ended:
        code = handle.process.returncode if handle.process is not None else None
        reason = f"worker exited with status {code}"
        return Ended(handle.work, read_status(handle.work.status), reason, handle.log)

    def cancel(self, handle: Handle) -> None:
        if handle.process is not None:
            stop_process(handle.process)


def stop_process(proc: subprocess.Popen, grace_s: float = 10) -> None:
    """Terminate `proc`, and kill it if it has not exited after `grace_s` seconds. A stopped
    process (SIGSTOP, Ctrl-Z) is continued so that it gets the SIGTERM now."""
    if proc.poll() is None:
        proc.terminate()
        proc.send_signal(signal.SIGCONT)  # (Popen ignores a process that has just gone)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace_s)
