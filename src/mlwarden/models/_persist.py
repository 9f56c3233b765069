"""Save and load scikit-learn models without pickle (skops), trusting only listed types."""

from __future__ import annotations

import importlib
import importlib.abc
import io
import json
import sys
import zipfile
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from mlwarden.errors import ModelError, UntrustedArtifactError

MEDIA_TYPE = "application/vnd.skops"

# Types a model saved by mlwarden may contain beyond what skops trusts by default. Anything
# else in a file (a custom class, a function reference) makes loading refuse the file.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "collections.OrderedDict",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.float64",
        "numpy.int64",
        "numpy.random._mt19937.MT19937",
        "numpy.random.mtrand.RandomState",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn.compose._column_transformer.ColumnTransformer",
        "sklearn.compose._column_transformer.make_column_selector",
        "sklearn.ensemble._gb.GradientBoostingClassifier",
        "sklearn.ensemble._gb_losses.BinomialDeviance",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
        "sklearn.dummy.DummyClassifier",
        "mlwarden.models._dp.DPSGDClassifier",
        "sklearn.impute._base.SimpleImputer",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._encoders.OneHotEncoder",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.preprocessing._label.LabelBinarizer",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.tree._tree.Tree",
        "sklearn.utils._bunch.Bunch",
    }
)


# scikit-learn's vendored array-api-compat namespace for torch: importing it imports torch.
_TORCH_NAMESPACE = "sklearn.externals.array_api_compat.torch"


class _SkipTorchNamespace(importlib.abc.MetaPathFinder):
    """Refuses the torch namespace of array-api-compat while skops is being imported."""

    def find_spec(
        self, fullname: str, path: Any, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == _TORCH_NAMESPACE:
            raise ImportError(f"{fullname}: not needed to list scikit-learn estimators")
        return None


def _skops_io() -> ModuleType:
    """``skops.io``, imported without importing torch.

    Importing ``skops.io`` lists the types it trusts with scikit-learn's ``all_estimators()``,
    which imports every scikit-learn package, the vendored array-api-compat torch namespace
    included, and that imports torch where it is installed: one to two seconds, most of the
    train step's overhead over a plain ``GridSearchCV``, for a library no scikit-learn model
    uses. The namespace defines no estimator, so skipping it leaves skops' trusted types as
    they are; the skip lasts only for this import.
    """
    if "skops.io" in sys.modules or "torch" in sys.modules:
        return importlib.import_module("skops.io")
    finder = _SkipTorchNamespace()
    sys.meta_path.insert(0, finder)
    try:
        return importlib.import_module("skops.io")  # every scikit-learn estimator: when needed
    finally:
        sys.meta_path.remove(finder)


def dumps_model(model: Any) -> bytes:
    """Serialise a fitted scikit-learn model to skops bytes (no pickle)."""
    sio = _skops_io()

    try:
        data = bytes(sio.dumps(model))
    except Exception as exc:  # skops raises plain TypeErrors for unsupported objects
        raise ModelError(f"cannot save {type(model).__name__} with skops: {exc}") from exc
    return _reproducible_zip(data)


def _renumber(node: Any, ids: dict[int, int]) -> Any:
    """Replace skops' object ids (memory addresses) by their order of first appearance."""
    if isinstance(node, list):
        return [_renumber(item, ids) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "__id__" and isinstance(value, int):
            value = ids.setdefault(value, len(ids) + 1)
        elif key == "file" and isinstance(value, str) and value.endswith(".npy"):
            stem = value.removesuffix(".npy")
            if stem.isdigit():
                value = f"{ids.setdefault(int(stem), len(ids) + 1)}.npy"
        else:
            value = _renumber(value, ids)
        out[key] = value
    return out


def _reproducible_zip(data: bytes) -> bytes:
    """Rewrite a skops file so the same model always gives the same bytes, hence the same hash.

    skops names objects and array files by ``id()`` and stamps zip entries with the time;
    both are replaced by stable values. The content is otherwise unchanged.
    """
    ids: dict[int, int] = {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        schema = _renumber(json.loads(src.read("schema.json")), ids)
        # Compact: with an indent, json falls back to its pure-Python encoder (10x slower).
        compact = json.dumps(schema, sort_keys=True, separators=(",", ":"))
        files = {"schema.json": compact.encode()}
        for name in src.namelist():
            if name == "schema.json":
                continue
            stem = name.removesuffix(".npy")
            renamed = f"{ids[int(stem)]}.npy" if stem.isdigit() and int(stem) in ids else name
            files[renamed] = src.read(name)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, files[name])
    return out.getvalue()


def untrusted_types(data: bytes, trusted: frozenset[str] = TRUSTED_TYPES) -> list[str]:
    """Types in a skops file that neither skops nor ``trusted`` vouches for."""
    sio = _skops_io()

    try:
        found = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise ModelError(f"not a readable skops model file: {exc}") from exc
    return sorted(t for t in found if t not in trusted)


def loads_model(data: bytes, trusted: frozenset[str] = TRUSTED_TYPES) -> Any:
    """Load skops bytes, refusing any type outside skops' defaults and ``trusted``."""
    sio = _skops_io()

    refused = untrusted_types(data, trusted)
    if refused:
        raise UntrustedArtifactError(
            f"model file contains untrusted types {refused}; it was not loaded. "
            "Add a type to the trusted list only if you know its code is safe."
        )
    allowed = sorted(t for t in sio.get_untrusted_types(data=data) if t in trusted)
    try:
        return sio.loads(data, trusted=allowed)
    except Exception as exc:
        raise ModelError(f"cannot load the skops model file: {exc}") from exc
