"""What every attack returns: success, cost in queries and time, and worked examples."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict


class AttackResult(BaseModel):
    """The common part of every attack's result; each attack adds its own metrics.

    ``queries`` counts every input row the attack sent to the model, as the adapter counted
    them; ``budget`` is the most it was allowed (None: unlimited).
    """

    model_config = ConfigDict(defer_build=True)

    attack: str
    n_points: int
    success_rate: float
    queries: int
    budget: int | None
    wall_time_s: float
    params: dict[str, Any]
    examples: list[dict[str, Any]] = []


def plain(value: Any) -> Any:
    """A numpy scalar as the matching Python scalar (what a result's examples hold), else as is."""
    return value.item() if isinstance(value, np.generic) else value
