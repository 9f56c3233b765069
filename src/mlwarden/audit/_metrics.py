"""Held-out classification metrics, binary or multiclass, in one pydantic result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from mlwarden.errors import DataError

MetricName = Literal["accuracy", "precision", "recall", "f1", "roc_auc"]
_ROC_POINTS = 200

if TYPE_CHECKING:
    import numpy as np


class Metrics(BaseModel):
    """Scores of a classifier on one labelled set.

    For two classes, precision, recall and F1 are those of the positive class; for more, their
    macro averages, and ROC AUC is one-vs-rest macro.
    """

    model_config = ConfigDict(defer_build=True)

    n: int
    classes: list[Any]
    positive: Any | None
    accuracy: float
    precision: float
    recall: float
    f1: float
    roc_auc: float
    confusion_matrix: list[list[int]]
    roc_curve: dict[str, list[float]] | None = None

    def get(self, name: MetricName) -> float:
        """A metric by name."""
        return float(getattr(self, name))


def classification_metrics(
    y_true: Any, proba: np.ndarray, classes: np.ndarray, positive: Any | None = None
) -> Metrics:
    """Score predicted class probabilities against true labels."""
    import numpy as np
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
        roc_curve,
    )

    y = np.asarray(y_true)
    pred = classes[np.argmax(proba, axis=1)]
    binary = len(classes) == 2
    if binary:
        pos = positive if positive is not None else classes[1]
        if pos not in list(classes):
            raise DataError(f"positive class {pos!r} is not among the classes {list(classes)}")
        pos_index = list(classes).index(pos)
        score = proba[:, pos_index]
        averaging: dict[str, Any] = {"average": "binary", "pos_label": pos}
        auc = float(roc_auc_score(y == pos, score)) if len(set(y)) == 2 else float("nan")
        fpr, tpr, _ = roc_curve(y == pos, score) if len(set(y)) == 2 else ([], [], [])
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), _ROC_POINTS)).astype(int))
        curve = {"fpr": [float(fpr[i]) for i in keep], "tpr": [float(tpr[i]) for i in keep]}
    else:
        pos = None
        averaging = {"average": "macro"}
        present = np.isin(classes, y)
        auc = (
            float(roc_auc_score(y, proba, multi_class="ovr", labels=classes))
            if present.all()
            else float("nan")
        )
        curve = None
    return Metrics(
        n=len(y),
        classes=[c.item() if hasattr(c, "item") else c for c in classes],
        positive=pos.item() if hasattr(pos, "item") else pos,
        accuracy=float(accuracy_score(y, pred)),
        precision=float(precision_score(y, pred, zero_division=0, **averaging)),
        recall=float(recall_score(y, pred, zero_division=0, **averaging)),
        f1=float(f1_score(y, pred, zero_division=0, **averaging)),
        roc_auc=auc,
        confusion_matrix=confusion_matrix(y, pred, labels=classes).tolist(),
        roc_curve=curve,
    )


def metric_value(
    name: MetricName, y_true: Any, proba: np.ndarray, classes: np.ndarray, positive: Any | None
) -> float:
    """One metric, as :func:`classification_metrics` defines it, without the rest (fast enough
    to bootstrap); NaN where it is undefined (ROC AUC on one class)."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    y = np.asarray(y_true)
    pred = classes[np.argmax(proba, axis=1)]
    if name == "accuracy":
        return float(accuracy_score(y, pred))
    binary = len(classes) == 2
    pos = (positive if positive is not None else classes[1]) if binary else None
    if name == "roc_auc":
        from sklearn.metrics import roc_auc_score

        if binary:
            truth = y == pos
            if truth.all() or not truth.any():
                return float("nan")
            return float(roc_auc_score(truth, proba[:, list(classes).index(pos)]))
        if not np.isin(classes, y).all():
            return float("nan")
        return float(roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    codes = _codes(y, classes)
    if codes is not None:  # from the confusion counts: a bootstrap resample costs one bincount
        pos_code = list(classes).index(pos) if binary else None
        return _counted(name, codes, np.argmax(proba, axis=1), len(classes), pos_code)
    averaging: dict[str, Any] = (
        {"average": "binary", "pos_label": pos} if binary else {"average": "macro"}
    )
    score = {"precision": precision_score, "recall": recall_score, "f1": f1_score}[name]
    return float(score(y, pred, zero_division=0, **averaging))


def as_codes(y: Any, classes: np.ndarray, positive: Any | None) -> tuple[Any, Any, Any | None]:
    """Labels, classes and positive class as class indices, for metrics computed many times.

    :func:`metric_value` gives the same numbers on the indices, and a bootstrap resample then
    compares integers, not text; unchanged when a label is not one of ``classes``.
    """
    import numpy as np

    codes = _codes(np.asarray(y), classes)
    if codes is None or (positive is not None and positive not in list(classes)):
        return y, classes, positive
    index = np.arange(len(classes))
    return codes, index, (list(classes).index(positive) if positive is not None else None)


def _codes(y: np.ndarray, classes: np.ndarray) -> np.ndarray | None:
    """Each label's index in ``classes``; None when a label is not one of them."""
    import numpy as np

    order = np.argsort(classes)
    at = np.searchsorted(classes[order], y).clip(max=len(classes) - 1)
    found = order[at]
    if len(y) and not bool((classes[found] == y).all()):
        return None
    result: np.ndarray = found
    return result


def _counted(name: str, y: np.ndarray, pred: np.ndarray, k: int, pos: int | None) -> float:
    """Precision, recall or F1 as scikit-learn gives them (``zero_division=0``), from counts.

    Binary: of the class ``pos``. Otherwise the macro average over the labels that occur in
    ``y`` or ``pred``, as scikit-learn averages when it is given no label list.
    """
    import numpy as np

    confusion = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    hits = np.diag(confusion).astype(float)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        recall = np.where(actual > 0, hits / actual, 0.0)
        both = predicted + actual
        f1 = np.where(both > 0, 2 * hits / both, 0.0)
    value = {"precision": precision, "recall": recall, "f1": f1}[name]
    if pos is not None:
        return float(value[pos])
    seen = (predicted > 0) | (actual > 0)
    return float(value[seen].mean())
