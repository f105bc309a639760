"""A study on a SLURM allocation, following Ray's documented pattern: the Ray head on the first node, one Ray worker
per other node started through `srun`, the driver (`raydc run --address`) on the batch host, and ports and a temporary
directory of the job's own, so that two jobs sharing a node do not collide. --out must be on a file system every node
mounts: trials write their rows there.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from raydc.config import ConfigError

SCRIPT_NAME = "slurm-job.sh"
# Each job takes PORT_SPAN ports from PORT_BASE + (job id mod PORT_SLOTS) × PORT_SPAN: Ray's head, client server and
# agents on the first few, its workers' on the rest.
PORT_BASE, PORT_SPAN, PORT_SLOTS = 10_000, 1_000, 50
WORKER_PORTS = 900
TIME_FORMAT = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")  # SLURM's [days-]hours[:minutes[:seconds]]


@dataclass(frozen=True)
class SlurmJob:
    study: Path
    out: Path
    nodes: int = 1
    cpus_per_node: int = 1
    gpus_per_node: int = 0
    time: str = "01:00:00"
    partition: str | None = None
    account: str | None = None

    def check(self) -> None:
        """Every field sane before anything is written or submitted."""
        if self.nodes < 1:
            raise ConfigError("--nodes", "needs at least one node")
        if self.cpus_per_node < 1:
            raise ConfigError("--cpus-per-node", "needs at least one CPU per node")
        if self.gpus_per_node < 0:
            raise ConfigError("--gpus-per-node", "cannot be negative")
        if not TIME_FORMAT.match(self.time):
            raise ConfigError("--time", f"{self.time!r} is not a SLURM time such as 24:00:00 or 1-12:00:00")

    def script(self) -> str:
        """The sbatch script."""
        python = shlex.quote(sys.executable)
        ray = shlex.quote(str(Path(sys.executable).parent / "ray"))
        out, study = shlex.quote(str(self.out)), shlex.quote(str(self.study))
        gpus = f"#SBATCH --gpus-per-task={self.gpus_per_node}\n" if self.gpus_per_node else ""
        extra = "".join(f"#SBATCH --{name}={value}\n" for name, value in
                        (("partition", self.partition), ("account", self.account)) if value)
        return f"""#!/bin/bash
#SBATCH --job-name=raydc-{self.study.stem}
#SBATCH --nodes={self.nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task={self.cpus_per_node}
{gpus}#SBATCH --time={self.time}
#SBATCH --output={self.out}/slurm-%j.log
{extra}# Written by `raydc slurm`: Ray's head on the first node, a worker on each other node, the study's driver here.
set -euo pipefail
export RAY_AUTH_MODE="${{RAY_AUTH_MODE:-disabled}}"
nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
head_node=${{nodes[0]}}
head_ip=$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address | awk '{{print $1}}')
# The job's own ports and temporary directory: another job on the same node uses others.
base=$(( {PORT_BASE} + (SLURM_JOB_ID % {PORT_SLOTS}) * {PORT_SPAN} ))
temp_dir=/tmp/raydc-$SLURM_JOB_ID
ports=(--node-manager-port=$((base + 1)) --object-manager-port=$((base + 2)) --runtime-env-agent-port=$((base + 3))
       --dashboard-agent-grpc-port=$((base + 4)) --dashboard-agent-listen-port=$((base + 5))
       --metrics-export-port=$((base + 6)) --min-worker-port=$((base + 100)) --max-worker-port=$((base + {99 + WORKER_PORTS})))
resources=(--num-cpus="$SLURM_CPUS_PER_TASK" --num-gpus={self.gpus_per_node})
cleanup() {{ kill $(jobs -p) 2>/dev/null || true; }}
trap cleanup EXIT
srun --nodes=1 --ntasks=1 -w "$head_node" {ray} start --head --block --node-ip-address="$head_ip" --port=$base \\
    --ray-client-server-port=$((base + 7)) --include-dashboard=false --disable-usage-stats --temp-dir="$temp_dir" "${{ports[@]}}" \\
    "${{resources[@]}}" &
for _ in $(seq 60); do {ray} status --address "$head_ip:$base" >/dev/null 2>&1 && break; sleep 2; done
for node in "${{nodes[@]:1}}"; do
  srun --nodes=1 --ntasks=1 -w "$node" {ray} start --block --address="$head_ip:$base" --disable-usage-stats --temp-dir="$temp_dir" \\
      "${{ports[@]}}" "${{resources[@]}}" &
done
{python} -m raydc.cli run {study} --out {out} --address "$head_ip:$base"
"""

    def write(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / SCRIPT_NAME
        path.write_text(self.script())
        path.chmod(0o755)
        return path


def submit(script: Path) -> str:
    """sbatch the script; returns the job id."""
    try:
        done = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ConfigError("--submit", "sbatch is not on PATH: submit the script on the cluster's login node") from None
    if done.returncode != 0:
        raise ConfigError("--submit", f"sbatch refused the job: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip().split(";")[0]
