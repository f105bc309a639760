"""Fixtures shared by several test modules."""
import os
import sys
import time
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray, started once per test session for the tests that need one; yields its address."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # set before Ray starts, so every Ray process sees it
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def digits():
    """sklearn's 8×8 digits as a Dataset (modules with other needs define their own `digits`)."""
    from raydc.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One pretraining per seed for the whole module: fit reuses it, as trials of a study do."""
    return tmp_path_factory.mktemp("pretrain")


@pytest.fixture
def product_dtypes():
    """A context manager class whose instances record the dtype of every matrix product run inside them."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class ProductDtypes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.dtypes = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ in ("mm", "addmm", "bmm", "baddbmm"):
                self.dtypes.add(args[1].dtype)  # the left factor (addmm's first argument is the bias)
            return func(*args, **(kwargs or {}))

    return ProductDtypes


@pytest.fixture
def finished_wandb_records():
    """Reads a W&B run file's records once it holds its exit record: wandb-core, a process of its own, may still be
    writing the file when `finish()` has returned. The reader is the benchmarks' (W&B ships none)."""
    benchmarks = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, benchmarks)
    from side_by_side import wandb_records

    def read(path: Path, timeout_s: float = 60.0) -> list:
        deadline = time.monotonic() + timeout_s
        while True:
            records = wandb_records(path)
            kinds = [r.WhichOneof("record_type") for r in records]
            if "exit" in kinds or time.monotonic() > deadline:
                assert "exit" in kinds, f"{path} ({path.stat().st_size} bytes) holds no exit record: {kinds}"
                return records
            time.sleep(0.2)

    yield read
    sys.path.remove(benchmarks)
