"""Build a guarded server from a store and a deployment, verifying everything first.

Nothing is served unless every version of the deployment verifies (signature, signer, lineage
head, artifact bytes): :func:`build_server` raises, and ``mlwarden serve`` exits with the
reason. The detectors and the drift monitor are fitted here, on the first route's own recorded
training and held-out splits.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mlwarden.serve._config import CoverageSettings, Deployment
from mlwarden.serve._guarded import Guarded
from mlwarden.serve._metrics import ServerMetrics
from mlwarden.serve._redis_state import open_state
from mlwarden.serve._runtime import (
    ServedModel,
    check_same_schema,
    load_served,
    training_reference,
)

if TYPE_CHECKING:
    import pandas as pd

    from mlwarden.lineage import CheckpointSigner, LineageStore, TrustPolicy
    from mlwarden.serve._decisions import DecisionLog
    from mlwarden.serve._extraction import DetectorSuite, FeatureSpace

#: The serving database (API keys and the decision log) beside the lineage store.
SERVE_DB = "serve.db"
#: Held-out rows used to calibrate the detectors' benign rates.
CALIBRATION_ROWS = 2000


def _held_out(store: LineageStore, served: ServedModel, columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    sha = served.version.manifest.artifacts.get("test")
    if sha is None:
        return pd.DataFrame(columns=columns)
    frame = pd.read_parquet(io.BytesIO(store.read_artifact(sha)))[columns]
    if len(frame) > CALIBRATION_ROWS:
        frame = frame.sample(n=CALIBRATION_ROWS, random_state=0)
    return frame.reset_index(drop=True)


def default_detectors(
    model: ServedModel,
    reference: pd.DataFrame,
    held_out: pd.DataFrame,
    space: FeatureSpace,
    coverage: CoverageSettings | None = None,
) -> DetectorSuite:
    """PRADA, boundary, off-manifold and rarity detectors (and coverage where enabled),
    calibrated on the model's data."""
    from mlwarden.serve._extraction import (
        BenignTraffic,
        BoundaryDetector,
        CoverageDetector,
        Detector,
        DetectorSuite,
        OffManifoldDetector,
        PradaDetector,
        RarityDetector,
    )

    benign = held_out if len(held_out) else reference
    traffic = BenignTraffic(
        space, space.transform(reference), space.transform(benign), model.predict_proba(benign)
    )
    detectors: list[Detector] = [
        PradaDetector(),
        BoundaryDetector(),
        OffManifoldDetector(),
        RarityDetector(),
    ]
    if coverage is not None and coverage.enabled:
        detectors.append(
            CoverageDetector(n_regions=coverage.n_regions, benign_queries=coverage.benign_queries)
        )
    return DetectorSuite(detectors).fit(traffic)


def build_server(
    store: LineageStore,
    deployment: Deployment,
    *,
    serve_db: Path | str | None = None,
    clock: Callable[[], float] = time.monotonic,
    trust: TrustPolicy | None = None,
    signer: CheckpointSigner | None = None,
) -> Guarded:
    """Verify and load the deployment's versions; fit guards; open keys and the decision log.

    Every version's signer must be trusted by ``trust`` (None: ``TrustPolicy.load()``);
    ``signer`` signs the decision log's checkpoints (without one the log is unsigned).
    """
    from mlwarden.lineage import TrustPolicy
    from mlwarden.serve._decisions import DecisionLog
    from mlwarden.serve._extraction import FeatureSpace
    from mlwarden.serve._keys import KeyStore
    from mlwarden.serve._monitor import DriftMonitor

    pinned = trust if trust is not None else TrustPolicy.load()
    routes = [load_served(store, route.model, pinned) for route in deployment.routes]
    shadow = load_served(store, deployment.shadow, pinned) if deployment.shadow else None
    references = [training_reference(store, served) for served in routes]
    schemas = [schema for schema, _ in references]
    if shadow is not None:
        schemas.append(training_reference(store, shadow)[0])
    check_same_schema(deployment, schemas)
    schema, reference = references[0]
    metrics = ServerMetrics()
    state = open_state(deployment.state, deployment.name, metrics)
    first = routes[0]
    features = detectors = monitor = None
    if deployment.guards.extraction.enabled:
        features = FeatureSpace.fit(reference, schema)
        held_out = _held_out(store, first, schema.features)
        detectors = default_detectors(
            first, reference, held_out, features, deployment.guards.extraction.coverage
        )
        detectors.share(state)
    if deployment.guards.drift.enabled:
        labels = first.classes[first.predict_proba(reference).argmax(axis=1)].tolist()
        drift = deployment.guards.drift
        monitor = DriftMonitor(
            reference, labels, schema, metrics, window=drift.window, every=drift.every
        )
    exits = budget = None
    policy = deployment.guards.slowdown
    if first.early_exit is not None and policy.enabled:
        from mlwarden.serve._slowdown import ComputeBudget, ExitMonitor, SlowdownPolicy

        clean = first.early_exit.answer(reference).compute
        exits = ExitMonitor(n_exits=first.early_exit.network.n_exits).fit(clean)
        exits.share(state)
        budget = ComputeBudget(
            SlowdownPolicy(
                max_exit_when_alarmed=policy.max_exit_when_alarmed,
                compute_per_s=policy.compute_per_s,
                alarm_hold_s=policy.alarm_hold_s,
            ),
            clock=clock,
        )
    explainers = {}
    if deployment.guards.explain.enabled:
        from mlwarden.audit import Explainer

        explainers = {
            served.ref: Explainer(served.adapter, frame)
            for served, (_, frame) in zip(routes, references, strict=True)
            if served.adapter is not None
        }
    head = store.read_head()
    db = serve_db if serve_db is not None else store.root / SERVE_DB
    return Guarded(
        deployment=deployment,
        routes=routes,
        shadow=shadow,
        schema=schema,
        keys=KeyStore(db, monotonic=clock, revocations=state.revocation_feed()),
        decisions=DecisionLog(
            db,
            max_queue=deployment.guards.decisions.max_backlog,
            max_delay_s=deployment.guards.decisions.max_delay_s,
            monotonic=clock,
            signer=signer,
        ),
        lineage_head=head[1] if head else "0" * 64,
        features=features,
        detectors=detectors,
        monitor=monitor,
        exits=exits,
        budget=budget,
        clock=clock,
        metrics=metrics,
        state=state,
        blocked=state.restrictions("blocked"),
        throttled=state.restrictions("throttled"),
        explainers=explainers,
    )


def open_decision_log(store: Path) -> DecisionLog:
    """The decision log of the server that ran on ``store`` (refused when none has)."""
    from mlwarden.errors import RecordNotFoundError
    from mlwarden.serve._decisions import DecisionLog

    db = store / SERVE_DB
    if not db.exists():
        raise RecordNotFoundError(f"no decision log under {store}: has a server run here?")
    return DecisionLog(db)


def close_server(g: Guarded) -> None:
    """Flush the decision log and stop the background workers."""
    if g.monitor is not None:
        g.monitor.close()
    g.decisions.close()
    g.keys.close()
