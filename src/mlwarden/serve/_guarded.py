"""What a deployment's app serves: its models, keys, decision log and guards, loaded and
verified before it starts (``build_server``), with the state the guards keep between requests."""

import time
from collections.abc import Callable, MutableSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlwarden.serve._config import Deployment
from mlwarden.serve._metrics import ServerMetrics
from mlwarden.serve._runtime import ServedModel
from mlwarden.serve._state import LocalState

if TYPE_CHECKING:
    from mlwarden.audit import Explainer
    from mlwarden.data import TableSchema
    from mlwarden.serve._decisions import DecisionLog
    from mlwarden.serve._extraction import DetectorSuite, FeatureSpace
    from mlwarden.serve._keys import KeyStore
    from mlwarden.serve._monitor import DriftMonitor
    from mlwarden.serve._slowdown import ComputeBudget, ExitMonitor
    from mlwarden.serve._state import GuardState


@dataclass
class Guarded:
    """Everything the app needs, loaded and verified before it starts."""

    deployment: Deployment
    routes: list[ServedModel]
    shadow: ServedModel | None
    schema: "TableSchema"
    keys: "KeyStore"
    decisions: "DecisionLog"
    lineage_head: str
    features: "FeatureSpace | None" = None
    detectors: "DetectorSuite | None" = None
    monitor: "DriftMonitor | None" = None
    exits: "ExitMonitor | None" = None
    budget: "ComputeBudget | None" = None
    clock: Callable[[], float] = time.monotonic
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    # guard state kept between requests: this process's, or shared by replicas (Redis)
    state: "GuardState" = field(default_factory=LocalState)
    blocked: MutableSet[str] = field(default_factory=set)
    throttled: MutableSet[str] = field(default_factory=set)
    # ``/v1/explain``: an explainer per route (by model ref), built on its training rows
    explainers: dict[str, "Explainer"] = field(default_factory=dict)
