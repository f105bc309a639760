"""A real Ray cluster on this machine: a head and two worker nodes as separate `ray start` processes, a study driven
with --address, trials spread over the nodes, one worker node killed mid-study, and exactly a clean run's rows."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from raydc.store import EPOCH_KEY, ResultStore

pytestmark = pytest.mark.ray

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}
CLUSTER_EPOCHS = 30
STUDY = {"name": "cluster", "dataset": "digits",
         "base": {"net": {"hidden": [64, 32]}, "pretrain": {"epochs": 2}, "train": {"epochs": CLUSTER_EPOCHS},
                  "brb": {"interval": 5, "subsample": 500}, "eval": {"subsample": 200}},
         "search": {"kind": "grid", "space": {"train.algorithm": ["dec", "idec", "dcn"]}, "seeds": [0, 1]},
         "resources": {"cpu": 1, "gpu": 0}, "checkpoint_every": 2, "max_failures": 3}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(args: list[str], temp: Path) -> subprocess.Popen:
    """One Ray node in its own process group, so that it alone can be killed."""
    return subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture
def cluster(tmp_path):
    """Head (no CPUs: trials run on the workers) and two 1-CPU worker nodes; yields (address, workers)."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    head = _node(["--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false",
                  "--node-ip-address=127.0.0.1"], tmp_path)
    time.sleep(5)
    workers = [_node([f"--address={address}", "--num-cpus=1", "--node-ip-address=127.0.0.1"], tmp_path)
               for _ in range(2)]
    deadline = time.monotonic() + 90
    probe = "import ray; ray.init(address='%s'); print(len([n for n in ray.nodes() if n['Alive']]))" % address
    while True:
        alive = subprocess.run([sys.executable, "-c", probe], env=ENV, capture_output=True, text=True)
        if alive.stdout.strip() == "3":
            break
        assert time.monotonic() < deadline, alive.stderr[-2000:]
        time.sleep(2)
    yield address, workers
    for process in [*workers, head]:
        _kill(process)


def test_a_study_on_three_nodes_survives_a_killed_worker_node_with_exact_rows(cluster, tmp_path):
    address, workers = cluster
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, "-m", "raydc.cli", "run", str(path), "--out", str(out),
                               "--address", address], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    deadline = time.monotonic() + 300
    while len({t["node"] for t in ResultStore(out).trials().to_pylist()}) < 2:  # both nodes have recorded trials
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[0][-3000:]
        time.sleep(0.2)
    _kill(workers[0])  # a node lost mid-study: its running trial must resume elsewhere
    output, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, output[-3000:]

    trials = ResultStore(out).trials().to_pylist()
    assert len(trials) == 6 and {t["status"] for t in trials} == {"finished"}
    assert all(t["epochs_done"] == CLUSTER_EPOCHS for t in trials)
    assert len({t["node"] for t in trials}) == 2 and None not in {t["node"] for t in trials}  # spread over both
    epochs = ResultStore(out).epochs().to_pylist()
    keys = [tuple(r[k] for k in EPOCH_KEY) for r in epochs]
    expected = {(t["trial_id"], phase, e) for t in trials
                for phase, count in (("pretrain", 2), ("cluster", CLUSTER_EPOCHS)) for e in range(count)}
    assert len(keys) == len(set(keys)) and set(keys) == expected
    shutil.rmtree(out / "ray", ignore_errors=True)
