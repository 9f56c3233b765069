"""SHAP explanations of one model: why it answered each row (Lundberg and Lee, NeurIPS 2017).

Three explainers, picked by what the model is, each additive (base value + the row's values ==
the explained output):

* tree models (random forest, extra trees, decision tree, gradient boosting) in a Pipeline:
  ``shap.TreeExplainer`` (path-dependent, exact) on the final estimator, in the space the
  pipeline's preprocessing makes; explains the probability (forests, trees) or the log-odds
  (boosting) of the explained class;
* linear models (``sklearn.linear_model``): the exact formula for independent features,
  ``w_j * (z_j - mean_j)`` of the log-odds over a background of training rows (what
  ``shap.LinearExplainer`` computes), with no shap needed;
* anything else (or a pipeline whose preprocessing cannot be mapped back): shap's
  ``PermutationExplainer`` on the explained class's probability, with a small background
  sample of training rows, through the adapter so its queries are counted.

Values in the preprocessed space are mapped back to input columns by summing each column's
outputs (its one-hot columns), so an explanation names the columns a client sent. shap is
imported only when a tree or model-agnostic explanation is asked for.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from mlwarden.errors import CapabilityError, DataError, ParameterError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlwarden.models import ModelAdapter

Method = Literal["tree", "linear", "permutation"]

_TREES = frozenset(
    {
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "GradientBoostingClassifier",
        "HistGradientBoostingClassifier",
    }
)


class Explanation(BaseModel):
    """SHAP values of some rows: one value per input column, and the base value they add to.

    ``output`` says what they explain (the explained class's ``probability``, or its
    ``log-odds``/score); ``base_value + sum(values[i]) == outputs[i]``.
    """

    model_config = ConfigDict(defer_build=True)

    method: Method
    output: Literal["probability", "log-odds"]
    explained_class: Any
    features: list[str]
    base_value: float
    values: list[list[float]]

    @property
    def outputs(self) -> list[float]:
        """The explained output of each row: the base value plus the row's values."""
        return [self.base_value + sum(row) for row in self.values]

    def mean_abs(self) -> list[tuple[str, float]]:
        """Mean |SHAP| per column over the rows, largest first (global importance)."""
        n = max(len(self.values), 1)
        means = [sum(abs(row[j]) for row in self.values) / n for j in range(len(self.features))]
        return sorted(zip(self.features, means, strict=True), key=lambda p: -p[1])


def import_shap() -> Any:
    """shap, imported quietly (its import warns about matplotlib), or a clear error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import shap
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise CapabilityError(
            "SHAP explanations of this model need shap: pip install 'mlwarden[explain]'"
        ) from exc
    return shap


def _column_groups(prep: Any, columns: list[str]) -> list[list[int]] | None:
    """For each input column, the preprocessed columns it became; None if not mappable."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    steps = [s for _, s in prep.steps] if isinstance(prep, Pipeline) else [prep]
    transformers = [s for s in steps if isinstance(s, ColumnTransformer)]
    if len(transformers) != 1 or steps[-1] is not transformers[0]:
        return None
    ct = transformers[0]
    groups: list[list[int]] = [[] for _ in columns]
    for name, trans, cols in ct.transformers_:
        if name == "remainder" and trans == "drop":
            continue
        sl = ct.output_indices_[name]
        names = [columns[c] if isinstance(c, int) else c for c in cols]
        inner = trans.steps[-1][1] if isinstance(trans, Pipeline) else trans
        if isinstance(inner, OneHotEncoder):
            sizes = [len(c) for c in inner.categories_]
            if inner.drop_idx_ is not None:
                sizes = [s - (d is not None) for s, d in zip(sizes, inner.drop_idx_, strict=True)]
        else:
            sizes = [1] * len(names)
        if sum(sizes) != sl.stop - sl.start or any(n not in columns for n in names):
            return None
        start = sl.start
        for column, size in zip(names, sizes, strict=True):
            groups[columns.index(column)].extend(range(start, start + size))
            start += size
    return groups


def _dense(Z: Any) -> np.ndarray:
    import numpy as np

    return np.asarray(Z.toarray() if hasattr(Z, "toarray") else Z, dtype=np.float64)


class Explainer:
    """Explains a fitted model's answers for one class with SHAP values per input column.

    Parameters
    ----------
    model : ModelAdapter
        Any adapter; one with a scikit-learn ``estimator`` gets the tree or linear explainer
        when it fits.
    background : DataFrame
        Training rows (features only): the linear explainer's means and the model-agnostic
        explainer's background; at most ``max_background`` are kept.
    explained_class : optional
        The class whose output is explained (default: the second class, the positive one of a
        binary model).
    """

    def __init__(
        self,
        model: ModelAdapter,
        background: pd.DataFrame,
        explained_class: Any = None,
        *,
        max_background: int = 50,
        seed: int = 0,
    ) -> None:
        if len(background) == 0:
            raise DataError("an explainer needs at least one background (training) row")
        if max_background < 1:
            raise ParameterError(f"max_background must be at least 1, got {max_background}")
        classes = [str(c) for c in model.classes_]
        default = classes[1 if len(classes) > 1 else 0]
        target = default if explained_class is None else explained_class
        if str(target) not in classes:
            raise ParameterError(f"class {target!r} is not one of the model's classes {classes}")
        self.model = model
        self.columns = [str(c) for c in background.columns]
        self.class_index = classes.index(str(target))
        self.explained_class = model.classes_[self.class_index]
        if len(background) > max_background:
            background = background.sample(n=max_background, random_state=seed)
        self.background = background.reset_index(drop=True)
        self.seed = seed
        self.method: Method = "permutation"
        self._prep: Any = None
        self._final: Any = None
        self._groups: list[list[int]] | None = None
        self._mean: np.ndarray | None = None  # the linear explainer's background mean
        self._choose(getattr(model, "estimator", None))

    def _choose(self, estimator: Any) -> None:
        from sklearn.pipeline import Pipeline

        if estimator is None:
            return
        if isinstance(estimator, Pipeline) and len(estimator.steps) > 1:
            prep, final = estimator[:-1], estimator.steps[-1][1]
            groups = _column_groups(prep, self.columns)
        else:
            prep, final, groups = None, estimator, [[j] for j in range(len(self.columns))]
        if groups is None:
            return
        kind = type(final).__name__
        module = type(final).__module__
        if kind in _TREES and module.startswith("sklearn."):
            self.method = "tree"
        elif module.startswith("sklearn.linear_model") and hasattr(final, "coef_"):
            self.method = "linear"
        else:
            return
        self._prep, self._final, self._groups = prep, final, groups

    def _space(self, X: pd.DataFrame) -> np.ndarray:
        frame = X[self.columns]
        return _dense(self._prep.transform(frame) if self._prep is not None else frame)

    def _to_columns(self, values: np.ndarray) -> np.ndarray:
        import numpy as np

        assert self._groups is not None
        return np.column_stack([values[:, g].sum(axis=1) for g in self._groups])

    def explain(self, X: pd.DataFrame) -> Explanation:
        """SHAP values of each row of ``X`` (its columns: the background's)."""
        missing = [c for c in self.columns if c not in X.columns]
        if missing:
            raise DataError(f"rows to explain lack column(s) {missing}; expected {self.columns}")
        if self.method == "linear":
            base, values = self._linear(X)
        elif self.method == "tree":
            base, values = self._tree(X)
        else:
            base, values = self._permutation(X)
        return Explanation(
            method=self.method,
            output="probability"
            if self.method == "permutation" or not hasattr(self._final, "decision_function")
            else "log-odds",
            explained_class=_plain(self.explained_class),
            features=self.columns,
            base_value=float(base),
            values=values.tolist(),
        )

    def _linear(self, X: pd.DataFrame) -> tuple[float, np.ndarray]:
        import numpy as np

        coef = np.asarray(self._final.coef_, dtype=np.float64)
        intercept = np.atleast_1d(np.asarray(self._final.intercept_, dtype=np.float64))
        row = 0 if coef.shape[0] == 1 else self.class_index
        w, b = coef[row], intercept[row]
        if coef.shape[0] == 1 and self.class_index == 0:  # binary: class 0 has the negated score
            w, b = -w, -b
        if self._mean is None:
            self._mean = self._space(self.background).mean(axis=0)
        mean = self._mean
        values = (self._space(X) - mean) * w
        return float(w @ mean + b), self._to_columns(values)

    def _tree(self, X: pd.DataFrame) -> tuple[float, np.ndarray]:
        import numpy as np

        shap = import_shap()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer = shap.TreeExplainer(self._final)
            raw = np.asarray(explainer.shap_values(self._space(X), check_additivity=True))
        base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))
        if raw.ndim == 3:  # (rows, features, classes)
            return float(base[self.class_index]), self._to_columns(raw[:, :, self.class_index])
        # one output (binary boosting): the log-odds of the second class
        sign = 1.0 if self.class_index == 1 else -1.0
        return sign * float(base[0]), self._to_columns(sign * raw)

    def _permutation(self, X: pd.DataFrame) -> tuple[float, np.ndarray]:
        import numpy as np
        import pandas as pd

        shap = import_shap()
        # shap's masker compares numbers: each column's values are coded as indices into the
        # values seen (background and rows), decoded again before the model sees them.
        rows = X[self.columns].reset_index(drop=True)
        both = pd.concat([self.background[self.columns], rows], ignore_index=True)
        vocab = [pd.unique(both[c]) for c in self.columns]
        cols = enumerate(self.columns)
        coded = [pd.Index(vocab[j]).get_indexer(pd.Index(both[c])) for j, c in cols]
        codes = np.column_stack(coded).astype(np.float64)
        dtypes, column, n_bg = self.background.dtypes, self.class_index, len(self.background)

        def answer(coded: np.ndarray) -> np.ndarray:
            index = coded.astype(np.int64)
            decoded = {c: vocab[j][index[:, j]] for j, c in enumerate(self.columns)}
            frame = pd.DataFrame(decoded).astype(dtypes)
            return np.asarray(self.model.predict_proba(frame))[:, column]

        d = len(self.columns)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            masker = shap.maskers.Independent(codes[:n_bg], max_samples=n_bg)
            explainer = shap.PermutationExplainer(answer, masker, seed=self.seed)
            found = explainer(codes[n_bg:], max_evals=4 * d + 2, silent=True)
        base = np.atleast_1d(np.asarray(found.base_values, dtype=np.float64))
        return float(base[0]), np.asarray(found.values, dtype=np.float64)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
