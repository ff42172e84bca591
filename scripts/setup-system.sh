#!/usr/bin/env bash
# System packages the test suite needs: a real SLURM cluster (slurm-wlm, munge) and git.
# Installs them with apt-get when one is missing (root); does nothing when all are there.
# Called by `make test` / `make check` and by .ci/run; tests never install anything themselves.
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
missing=0
for tool in slurmctld slurmd munged git; do
  have "$tool" || missing=1
done
[ "$missing" = 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "error: the tests need slurm-wlm, munge and git; install them (as root: $0)" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm munge git >/dev/null
