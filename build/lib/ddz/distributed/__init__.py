"""Several processes (ranks) working on one run through torch.distributed: the process group and
its counted collectives (ranks), which classes a rank owns (shard), and the launchers that start
ranks on this machine (local) or as one SLURM job (slurm)."""
