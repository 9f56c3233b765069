"""What a running server holds: verified models, the training reference, routing and guards.

Everything here is loaded before the first request: a model whose signature, lineage head or
artifact hashes fail verification stops the server from starting (fail closed), and so does a
deployment whose versions were trained on different schemas.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from mlwarden.errors import CapabilityError, ModelError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlwarden.data import Imputation, TableSchema
    from mlwarden.lineage import LineageStore, TrustPolicy
    from mlwarden.models import EarlyExitNetwork, ModelAdapter, ModelVersion
    from mlwarden.serve._config import Deployment

#: Training rows kept as the drift reference and to fit the detectors' feature space.
REFERENCE_ROWS = 5000


class ExitAnswers(NamedTuple):
    """An early-exit network's answers: probabilities, exit index, compute fraction, capped."""

    proba: np.ndarray
    exits: np.ndarray
    compute: np.ndarray
    capped: np.ndarray


@dataclass
class EarlyExit:
    """An early-exit network as served: its serving threshold and its input scaling."""

    network: EarlyExitNetwork
    threshold: float
    input_scale: float
    info: dict[str, Any]
    n_classes: int

    def answer(self, frame: pd.DataFrame, max_exit: int | None = None) -> ExitAnswers:
        """Early-exit inference on ``frame``'s pixels, at most up to exit ``max_exit``."""
        import numpy as np

        X = frame.to_numpy(dtype=np.float32) * np.float32(self.input_scale)
        out = self.network.infer(X, self.threshold, max_exit=max_exit)
        return ExitAnswers(
            np.asarray(out.probabilities, dtype=np.float64),
            np.asarray(out.exit_index),
            np.asarray(out.compute_fraction, dtype=np.float64),
            np.asarray(out.capped, dtype=bool),
        )


@dataclass
class ServedModel:
    """One registered version, verified and loaded, ready to answer.

    A classifier of any kind that runs (scikit-learn, ONNX, a torch classifier with its
    recorded architecture) answers through ``adapter``; an early-exit network through
    ``early_exit``, which also says which exit answered and what it cost.
    """

    ref: str
    version: ModelVersion
    adapter: ModelAdapter | None
    imputation: Imputation | None
    early_exit: EarlyExit | None = None

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Class probabilities of ``frame`` (training-time imputation applied first)."""
        if self.early_exit is not None:
            return self.early_exit.answer(frame).proba
        assert self.adapter is not None
        if self.imputation is not None:
            frame = self.imputation.apply(frame)
        return self.adapter.predict_proba(frame)

    @property
    def classes(self) -> np.ndarray:
        """Class labels in the column order of :meth:`predict_proba`."""
        import numpy as np

        if self.early_exit is not None:
            return np.arange(self.early_exit.n_classes)
        assert self.adapter is not None
        return self.adapter.classes_

    def matrix_order(self, columns: list[str]) -> list[str] | None:
        """The column order in which the model reads a bare numeric matrix of the schema's
        ``columns`` (what its adapter would pick from a table), or None when it must be given
        the table: scikit-learn models, early-exit networks and models that impute first."""
        if self.early_exit is not None or self.imputation is not None or self.adapter is None:
            return None
        if not self.takes_numbers_only:
            return None
        names = getattr(self.adapter, "feature_names", None)
        if names is None:
            return list(columns)  # the adapter reads a table's columns as they come
        return list(names) if sorted(names) == sorted(columns) else None

    @property
    def takes_numbers_only(self) -> bool:
        """Whether the model reads its columns as one numeric matrix (all but scikit-learn)."""
        from mlwarden.models import SklearnAdapter

        return not isinstance(self.adapter, SklearnAdapter)


def load_served(store: LineageStore, ref: str, trust: TrustPolicy | None = None) -> ServedModel:
    """Verify and load ``ref`` (``name@N``, ``name@latest``, ``name@STAGE``) from the registry.

    Any registered classifier that runs is served the same way; one that cannot (a state dict
    without its architecture, a language model) is refused with what it is. The input scaling
    of an early-exit network is the one its training recorded. ``trust`` is the policy of
    pinned keys (None: ``TrustPolicy.load()``, outside the store).
    """
    from mlwarden.data import Imputation
    from mlwarden.models import DIGITS_INPUT_SCALE, EARLY_EXIT_MEDIA_TYPE, ModelRegistry

    registry = ModelRegistry(store, trust)
    if registry.get(ref).manifest.model_media_type == EARLY_EXIT_MEDIA_TYPE:
        version, network, info = registry.load_early_exit(ref)  # verified
        n_classes = network.config.n_classes if network.config is not None else 10
        # Versions registered before ``input_scale`` was recorded were all trained on
        # load_digits_split's pixels, which that scale describes.
        scale = float(info.get("input_scale", DIGITS_INPUT_SCALE))
        early = EarlyExit(network, float(info["threshold"]), scale, info, n_classes)
        return ServedModel(version.ref, version, None, None, early)
    try:
        version, adapter = registry.load_classifier(ref)  # verifies signature, head, artifacts
    except CapabilityError as exc:
        raise ModelError(f"{ref} cannot be served: {exc}") from exc
    fill = registry.imputation(version)
    imputation = Imputation.model_validate(fill) if fill is not None else None
    return ServedModel(version.ref, version, adapter, imputation)


def training_reference(
    store: LineageStore, served: ServedModel, seed: int = 0
) -> tuple[TableSchema, pd.DataFrame]:
    """The schema a version was trained on and a sample of its training rows (features only)."""
    import pandas as pd

    from mlwarden.data import TableSchema

    if served.early_exit is not None:  # trained on the bundled Digits images
        from mlwarden import data as datasets

        digits = datasets.load("digits")
        sample = digits.X.sample(n=min(len(digits.X), REFERENCE_ROWS), random_state=seed)
        return digits.schema, sample.reset_index(drop=True)
    artifacts = served.version.manifest.artifacts
    if "schema" not in artifacts or "train" not in artifacts:
        raise ModelError(
            f"{served.ref} cannot be served: it was registered without its schema and training "
            "split, which the request body and the guards are built from; register it with "
            "its data (mlwarden import FILE --data TABLE --label COLUMN)"
        )
    schema = TableSchema.model_validate_json(store.read_artifact(artifacts["schema"]))
    text = [c for c in schema.features if not schema.columns[c].is_numeric]
    if served.takes_numbers_only and text:
        raise ModelError(
            f"{served.ref} cannot be served: a {served.version.manifest.model_media_type} model "
            f"reads numbers only, but column(s) {text[:5]} are text; expected a numeric schema"
        )
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
        if len(self._edges) == 1:
            return 0  # one route: every hash lands on it
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
