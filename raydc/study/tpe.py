"""The optuna search of a study: seeded TPE that knows every configuration the study directory already holds."""
from __future__ import annotations

import math
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from raydc.store import ResultStore
from raydc.study.record import DONE_STATUSES
from raydc.study.spec import Study


class RecordedSearch(OptunaSearch):
    """OptunaSearch that, once Tune gives it the space, also learns the recorded configurations that did not finish
    (diverged or stopped) as pruned trials: TPE ranks them below every finished one and so draws away from them."""

    def __init__(self, unfinished: list[dict[str, Any]], **kwargs: Any):
        super().__init__(**kwargs)
        self.unfinished = unfinished

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        if not super().set_search_properties(metric, mode, config, **spec):
            return False
        for point in self.unfinished:
            self.add_evaluated_point(point, None, pruned=True)
        return True


def tpe_search(study: Study, store: ResultStore) -> RecordedSearch:
    """TPE, seeded, told about the configurations this directory already finished, failed or stopped."""
    points, rewards, unfinished = [], [], []
    for row in store.trials().to_pylist():
        point = {d.key: row.get(d.key) for d in study.dimensions}
        fits = all(v in d.values if d.kind == "choice" else v is not None and d.low <= v <= d.high
                   for d, v in zip(study.dimensions, point.values()))
        if not fits or row["status"] not in DONE_STATUSES:  # error trials run again
            continue
        value = row.get(study.spec.metric)
        if row["status"] == "finished" and value is not None and math.isfinite(value):
            points.append(point)
            rewards.append(value)
        else:
            unfinished.append(point)
    # TPE starts with seeded random draws: a fresh seed per extension keeps it from redrawing recorded points.
    return RecordedSearch(unfinished, seed=study.spec.search.seed + len(points) + len(unfinished),
                          points_to_evaluate=points or None, evaluated_rewards=rewards or None)
