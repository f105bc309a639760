"""Where a study directory keeps each thing.

<study>/study.yaml            the resolved spec that produced the tables
<study>/trials.parquet, epochs.parquet, assignments/   the results (raydc.tables.store)
<study>/pretrain_cache/       pretrained networks shared by every trial (unless the spec names another cache)
<study>/checkpoints/<trial>/  full trial state of a trial that is not recorded yet
<study>/checkpoints/population-<hash>/  a population's state, until every member it holds is recorded
<study>/journal/<trial>.jsonl epoch rows of a trial that is not recorded yet
<study>/optuna.db             an optuna search's Optuna study (Optuna's own storage; a rerun continues it)
<study>/mlflow.db, tensorboard/, wandb/   the trackers a study's `tracking:` section names (raydc.study.tracking)
<study>/ray/                  Ray Tune and Ray Train run state
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPEC_FILE = "study.yaml"


@dataclass(frozen=True)
class StudyPaths:
    root: Path
    pretrain_cache: Path

    @classmethod
    def at(cls, root: str | Path, pretrain_cache: str | Path | None = None) -> StudyPaths:
        root = Path(root).expanduser().resolve()
        cache = Path(pretrain_cache).expanduser().resolve() if pretrain_cache else root / "pretrain_cache"
        return cls(root, cache)

    @property
    def spec_file(self) -> Path:
        return self.root / SPEC_FILE

    @property
    def ray_dir(self) -> Path:
        return self.root / "ray"

    def checkpoint_dir(self, tid: str) -> Path:
        return self.root / "checkpoints" / tid

    def journal_file(self, tid: str) -> Path:
        return self.root / "journal" / f"{tid}.jsonl"

    def lock_file(self, tid: str) -> Path:
        return self.root / "journal" / f"{tid}.lock"

    def check_holds(self, study_name: str) -> None:
        """Refuse a study directory that holds the results of another study."""
        import yaml

        from raydc.config import ConfigError

        if self.spec_file.exists():
            previous = (yaml.safe_load(self.spec_file.read_text()) or {}).get("name")
            if previous != study_name:
                raise ConfigError("name", f"{self.root} holds the results of study {previous!r}; choose another --out")
