"""Save and load scikit-learn models without pickle (skops), trusting only listed types."""

from __future__ import annotations

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


def dumps_model(model: Any) -> bytes:
    """Serialise a fitted scikit-learn model to skops bytes (no pickle)."""
    import skops.io as sio  # imports every scikit-learn estimator: only when needed

    try:
        return bytes(sio.dumps(model))
    except Exception as exc:  # skops raises plain TypeErrors for unsupported objects
        raise ModelError(f"cannot save {type(model).__name__} with skops: {exc}") from exc


def untrusted_types(data: bytes, trusted: frozenset[str] = TRUSTED_TYPES) -> list[str]:
    """Types in a skops file that neither skops nor ``trusted`` vouches for."""
    import skops.io as sio

    try:
        found = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise ModelError(f"not a readable skops model file: {exc}") from exc
    return sorted(t for t in found if t not in trusted)


def loads_model(data: bytes, trusted: frozenset[str] = TRUSTED_TYPES) -> Any:
    """Load skops bytes, refusing any type outside skops' defaults and ``trusted``."""
    import skops.io as sio

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
