"""An ONNX model behind the adapter protocol, run by onnxruntime (an optional extra)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlwarden.errors import ModelError
from mlwarden.models._adapter import MeteredModel, finite_probabilities

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

_INSTALL_HINT = "pip install 'mlwarden[onnx]'"


class OnnxAdapter(MeteredModel):
    """Wraps an ONNX classifier: class probabilities from its probability output.

    The model must take one 2-D float input (features in ``feature_names`` order) and have an
    output of per-class probabilities, either a tensor (skl2onnx with ``zipmap=False``, or a
    softmax head) or a list of class-to-probability maps (skl2onnx's default ZipMap). Every row
    sent counts as a query; a call past the budget is refused whole, as in ``SklearnAdapter``.
    """

    def __init__(
        self,
        model: bytes | str | Path,
        classes: list[Any] | None = None,
        feature_names: list[str] | None = None,
        budget: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError(f"ONNX models need onnxruntime: {_INSTALL_HINT}") from exc
        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        try:
            self._session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"not a loadable ONNX model: {exc}") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"expected an ONNX model with one input, it has {len(inputs)}")
        self._input = inputs[0].name
        outputs = self._session.get_outputs()
        self._label_output = outputs[0].name
        self._proba_output = outputs[-1].name
        super().__init__(budget)
        self.feature_names = feature_names
        self._classes = classes if classes is not None else _zipmap_classes(data)

    @property
    def classes_(self) -> np.ndarray:
        """Class labels in probability-column order (from the model's ZipMap, or as given)."""
        import numpy as np

        if self._classes is None:
            raise ModelError("pass classes=[...] for an ONNX model without a ZipMap output")
        return np.asarray(self._classes)

    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        import numpy as np
        import pandas as pd

        if isinstance(X, pd.DataFrame):
            if self.feature_names is not None:
                X = X[self.feature_names]
            return X.to_numpy(dtype=np.float32)
        return np.asarray(X, dtype=np.float32)

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Class probabilities, one row per input row."""
        import numpy as np

        self._spend(len(X))
        try:
            raw = self._session.run([self._proba_output], {self._input: self._matrix(X)})[0]
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"the ONNX model refused the input: {exc}") from exc
        if isinstance(raw, list):  # ZipMap: one {class: probability} per row
            if self._classes is None:
                self._classes = sorted(raw[0]) if raw else []
            proba = np.array([[row[c] for c in self._classes] for row in raw], dtype=float)
            return finite_probabilities(proba)
        return finite_probabilities(raw)


def _zipmap_classes(data: bytes) -> list[Any] | None:
    """The class labels a ZipMap node declares (skl2onnx writes them), if the onnx package
    is there to read the graph; otherwise they are learned from the first prediction."""
    try:
        import onnx
    except ImportError:
        return None
    graph = onnx.load_from_string(data).graph
    for node in graph.node:
        if node.op_type == "ZipMap":
            for attribute in node.attribute:
                if attribute.name == "classlabels_strings":
                    return [s.decode() for s in attribute.strings]
                if attribute.name == "classlabels_int64s":
                    return list(attribute.ints)
    return None
