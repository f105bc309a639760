"""Loss terms summed over an epoch's samples on the device, so a step never waits for the host."""
from __future__ import annotations

import torch


class LossTotals:
    """Sums of named loss terms (scalars, or (M,) per member of a population): one stack and one add per step."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.sums: torch.Tensor | None = None  # (terms, ...) on the device, allocated by the first step

    def add(self, terms: dict[str, torch.Tensor], count: int) -> None:
        """Add each term weighted by the `count` samples it averages over (capture-safe after the first call)."""
        values = torch.stack([value.detach().float() for value in terms.values()])
        if self.sums is None:
            self.names, self.sums = list(terms), torch.zeros_like(values)
        elif list(terms) != self.names:
            raise ValueError(f"loss terms {list(terms)} differ from the epoch's first step's {self.names}")
        self.sums.add_(values, alpha=count)

    def zero(self) -> None:
        if self.sums is not None:
            self.sums.zero_()

    def means(self, n: int) -> dict[str, float | list[float]]:
        """Each term's mean over n samples (a list over members for a population): one host sync."""
        return {} if self.sums is None else dict(zip(self.names, (self.sums / n).tolist()))
