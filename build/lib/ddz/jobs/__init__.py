"""Running work elsewhere: worker processes on this machine or SLURM jobs through submitit.

A `Work` is a module-level function and its JSON arguments, and the status file the function
leaves when it ends; a backend (`LocalWorkers`, `SlurmJobs`) starts it and tracks its `Handle`;
`run_pool` keeps a bounded number running and reports each as `Ended` (the status it left, or
why it left none, and its log). Nothing here knows what the work is: the zoo's and repro's
launchers, and the distributed ranks, adapt this layer.
"""

from ddz.jobs.local import LocalWorkers, stop_process
from ddz.jobs.pool import run_pool
from ddz.jobs.slurm import ClusterOptions, SlurmJobs, slurm_cpus, slurm_executor, slurm_submitit
from ddz.jobs.work import LOG_TAIL_LINES, Backend, Ended, Handle, Work, log_tail

__all__ = [
    "LOG_TAIL_LINES", "Backend", "ClusterOptions", "Ended", "Handle", "LocalWorkers", "SlurmJobs", "Work",
    "log_tail", "run_pool", "slurm_cpus", "slurm_executor", "slurm_submitit", "stop_process",
]
