"""What a running server holds: verified models, the training reference, routing and guards.

Everything here is loaded before the first request: a model whose signature, lineage head or
artifact hashes fail verification stops the server from starting (fail closed), and so does a
deployment whose versions were trained on different schemas.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlwarden.errors import ModelError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlwarden.data import Imputation, TableSchema
    from mlwarden.lineage import LineageStore
    from mlwarden.models import ModelVersion, SklearnAdapter
    from mlwarden.serve._config import Deployment

#: Training rows kept as the drift reference and to fit the detectors' feature space.
REFERENCE_ROWS = 5000


@dataclass
class ServedModel:
    """One registered version, verified and loaded, ready to answer."""

    ref: str
    version: ModelVersion
    adapter: SklearnAdapter
    imputation: Imputation | None

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities of ``frame`` (training-time imputation applied first)."""
        if self.imputation is not None:
            frame = self.imputation.apply(frame)
        return self.adapter.predict_proba(frame)

    @property
    def classes(self) -> np.ndarray:
        """Class labels in the column order of :meth:`predict_proba`."""
        return self.adapter.classes_


def load_served(store: LineageStore, ref: str) -> ServedModel:
    """Verify and load ``ref`` (``name@N`` or ``name@latest``) from the store's registry."""
    from mlwarden.data import Imputation
    from mlwarden.models import ModelRegistry

    registry = ModelRegistry(store)
    version, adapter = registry.load(ref)  # verifies signature, head and every artifact
    fill = registry.imputation(version)
    imputation = Imputation.model_validate(fill) if fill is not None else None
    return ServedModel(version.ref, version, adapter, imputation)


def training_reference(
    store: LineageStore, served: ServedModel, seed: int = 0
) -> tuple[TableSchema, pd.DataFrame]:
    """The schema a version was trained on and a sample of its training rows (features only)."""
    import pandas as pd

    from mlwarden.data import TableSchema

    artifacts = served.version.manifest.artifacts
    if "schema" not in artifacts or "train" not in artifacts:
        raise ModelError(f"{served.ref} was registered without its schema and training split")
    schema = TableSchema.model_validate_json(store.read_artifact(artifacts["schema"]))
    frame = pd.read_parquet(io.BytesIO(store.read_artifact(artifacts["train"])))
    frame = frame[schema.features]
    if len(frame) > REFERENCE_ROWS:
        frame = frame.sample(n=REFERENCE_ROWS, random_state=seed)
    return schema, frame.reset_index(drop=True)


class Router:
    """Sticky weighted routing: a client always lands on the same route (A/B split)."""

    def __init__(self, weights: list[float], salt: str) -> None:
        total = sum(weights)
        self._edges = []
        running = 0.0
        for weight in weights:
            running += weight / total
            self._edges.append(running)
        self._salt = salt

    def route(self, client: str) -> int:
        """Index of the route for ``client``: a hash of client and deployment mapped to [0, 1)."""
        digest = hashlib.sha256(f"{self._salt}\0{client}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64
        for index, edge in enumerate(self._edges):
            if point < edge:
                return index
        return len(self._edges) - 1


def check_same_schema(deployment: Deployment, schemas: list[TableSchema]) -> None:
    """All routes (and the shadow) must take the same columns, or one request cannot serve all."""
    first = schemas[0].features
    for route, schema in zip(deployment.routes[1:], schemas[1:], strict=False):
        if schema.features != first:
            raise ModelError(
                f"{route.model} takes columns {schema.features}, but "
                f"{deployment.routes[0].model} takes {first}: A/B routes need one schema"
            )
