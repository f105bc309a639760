#!/usr/bin/env bash
# A one-node SLURM on this machine for tests/test_slurm.py: installs Debian's slurm-wlm and munge if missing (root),
# writes a slurm.conf for this host and starts munged, slurmctld and slurmd unless they already answer.
# Prints "ready" when `sinfo` shows the node idle; exits 3, saying why, when SLURM cannot be installed or run here
# (no root, no package mirror, daemons this machine cannot host). With a file argument, it appends the ids of the daemons it started there (for the caller to end).
set -euo pipefail
pids_file=${1:-/dev/null}
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "slurm-wlm and munge are not installed and this is not root" >&2; exit 3; }
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null; } \
    || { echo "apt-get could not install slurm-wlm and munge" >&2; exit 3; }
fi
host=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
conf=/etc/slurm/slurm.conf
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
if ! grep -q "^NodeName=$host " "$conf" 2>/dev/null; then
  cat > "$conf" <<CONF
ClusterName=raydc-test
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
fi
[ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
start() {  # daemon name, command...: start it unless it runs, and note its id
  local name=$1; shift
  pgrep -x "$name" >/dev/null && return 0
  "$@" || { echo "$name does not start here: $(tail -n 3 /var/log/slurm/*.log 2>/dev/null)" >&2; exit 3; }
  for _ in $(seq 20); do pgrep -x "$name" >/dev/null && break; sleep 0.2; done
  pgrep -x "$name" >> "$pids_file" || { echo "$name exited right after starting" >&2; exit 3; }
}
start munged runuser -u munge -- /usr/sbin/munged
start slurmctld slurmctld
start slurmd slurmd
for _ in $(seq 30); do
  if sinfo -h -o %T 2>/dev/null | grep -qE "idle|mixed|allocated"; then echo ready; exit 0; fi
  scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm did not come up: $(sinfo 2>&1 | tail -1); see /var/log/slurm/" >&2
exit 3
