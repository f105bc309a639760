"""A real Ray cluster on this machine: a head and two worker nodes (separate raylets), a study driven
with --address, trials spread over the nodes, one worker node killed mid-study, and exactly a clean run's rows."""
import os
import subprocess
import sys
import time

import pytest
import yaml

from raydc.tables.store import EPOCH_KEY, ResultStore

pytestmark = pytest.mark.ray

CLUSTER_EPOCHS = 30
STUDY = {"name": "cluster", "dataset": "digits",
         "base": {"net": {"hidden": [64, 32]}, "pretrain": {"epochs": 2}, "train": {"epochs": CLUSTER_EPOCHS},
                  "brb": {"interval": 5, "subsample": 500}, "eval": {"subsample": 200}},
         "search": {"kind": "grid", "space": {"train.algorithm": ["dec", "idec", "dcn"]}, "seeds": [0, 1]},
         "resources": {"cpu": 1, "gpu": 0}, "checkpoint_every": 2, "max_failures": 3}
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


@pytest.fixture
def cluster():
    """A head without CPUs (trials run on the workers) and two 1-CPU worker nodes, each node its own raylet and
    processes (`ray start --address` beside a head on one machine hangs; Ray's own test cluster does this)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [nodes.add_node(num_cpus=1) for _ in range(2)]
    nodes.wait_for_nodes()
    yield nodes, workers
    nodes.shutdown()  # ends only the nodes this fixture started


def test_a_study_on_three_nodes_survives_a_killed_worker_node_with_exact_rows(cluster, tmp_path):
    nodes, workers = cluster
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, "-m", "raydc.cli", "run", str(path), "--out", str(out),
                               "--address", nodes.address], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    deadline = time.monotonic() + 300
    while len({t["node"] for t in ResultStore(out).trials().to_pylist()}) < 2:  # both nodes have recorded trials
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()[0][-3000:]
        time.sleep(0.2)
    nodes.remove_node(workers[0], allow_graceful=False)  # a node lost mid-study: its trial must resume elsewhere
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
