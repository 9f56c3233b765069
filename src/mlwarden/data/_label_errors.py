"""Find likely mislabeled rows with confident learning.

Confident learning (Northcutt, Jiang, Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 2021) needs only the given labels and out-of-sample predicted
probabilities. It counts the rows a model *confidently* places in another class than their
label (the confident joint), calibrates those counts into an estimate of the joint
distribution of given and true labels, and then prunes that many rows, the most suspicious
first.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from mlwarden._tasks import at_least, task_map, use_runner
from mlwarden.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike, NDArray

__all__ = [
    "LabelIssues",
    "PruneMethod",
    "find_label_issues",
    "flip_labels",
    "out_of_fold_probabilities",
    "precision_recall",
]

PruneMethod = Literal[
    "prune_by_noise_rate", "prune_by_class", "both", "confident_joint", "predicted_neq_given"
]
_METHODS: tuple[str, ...] = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_joint",
    "predicted_neq_given",
)
_SUM_TOLERANCE = 1e-3


class LabelIssues(BaseModel):
    """Rows whose given label is likely wrong, most suspicious first, with the noise estimate.

    ``indices``, ``given``, ``suggested`` and ``self_confidence`` are aligned: entry ``r``
    describes the ``r``-th most suspicious row (lowest predicted probability of its own label).
    ``joint`` is the estimated joint distribution of given label (rows) and true label (columns)
    in the order of ``classes``; ``noise_matrix[i][j]`` estimates P(given = i | true = j).
    """

    model_config = ConfigDict(defer_build=True)

    indices: list[int]
    given: list[Any]
    suggested: list[Any]
    self_confidence: list[float]
    n_rows: int
    estimated_noise_rate: float
    method: str
    per_class_thresholds: dict[str, float]
    classes: list[Any]
    joint: list[list[float]]
    noise_matrix: list[list[float]]

    @property
    def n_issues(self) -> int:
        """How many rows were flagged."""
        return len(self.indices)


def _python(value: Any) -> Any:
    """A numpy scalar as the Python scalar it holds, so results serialise to JSON."""
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value


def _encode(labels: ArrayLike, classes: Sequence[Any] | NDArray[Any]) -> NDArray[np.intp]:
    """Labels as positions in ``classes``; a label outside ``classes`` is a DataError."""
    import numpy as np

    class_list = [_python(c) for c in np.asarray(classes, dtype=object).ravel()]
    if len(class_list) < 2:
        raise DataError(f"need at least 2 classes to find label errors, got {class_list!r}")
    if len(set(class_list)) != len(class_list):
        raise DataError(f"classes must be unique, got {class_list!r}")
    position = {c: i for i, c in enumerate(class_list)}
    values = [_python(v) for v in np.asarray(labels, dtype=object).ravel()]
    unknown = sorted({repr(v) for v in values if not isinstance(v, Hashable) or v not in position})
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise DataError(f"labels {shown} are not among the classes {class_list!r}")
    return np.fromiter((position[v] for v in values), dtype=np.intp, count=len(values))


def _check_probabilities(pred_probs: ArrayLike, n: int, k: int) -> NDArray[np.float64]:
    """``pred_probs`` as an (n, k) float array of rows that are probability distributions."""
    import numpy as np

    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (n, k):
        raise DataError(
            f"pred_probs has shape {probs.shape}; expected (n_rows, n_classes) = ({n}, {k})"
        )
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1 + _SUM_TOLERANCE).any():
        raise DataError("pred_probs must hold finite probabilities in [0, 1]")
    sums = probs.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _SUM_TOLERANCE)
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"pred_probs rows must sum to 1 (within {_SUM_TOLERANCE:g}); {bad.size} do not, "
            f"e.g. row {row} sums to {sums[row]:.6g}"
        )
    return probs


def _round_preserving_row_sums(matrix: NDArray[np.float64]) -> NDArray[np.int64]:
    """Round each row to integers whose sum is the row's rounded sum (largest remainders)."""
    import numpy as np

    floors = np.floor(matrix)
    rounded = floors.astype(np.int64)
    short = np.rint(matrix.sum(axis=1)).astype(np.int64) - rounded.sum(axis=1)
    remainders = matrix - floors
    for i, missing in enumerate(short):
        if missing > 0:
            # Stable sort so equal remainders go to the leftmost cells: reproducible rounding.
            order = np.argsort(-remainders[i], kind="stable")[:missing]
            rounded[i, order] += 1
    return rounded


def _confident_thresholds(
    probs: NDArray[np.float64], codes: NDArray[np.intp], k: int
) -> NDArray[np.float64]:
    """Per class j, the mean predicted probability of j over the rows labelled j.

    A class nobody is labelled with gets an infinite threshold: no row is confidently in it.
    """
    import numpy as np

    thresholds = np.full(k, np.inf)
    for j in range(k):
        mine = codes == j
        if mine.any():
            thresholds[j] = float(probs[mine, j].mean())
    return thresholds


def _confident_assignment(
    probs: NDArray[np.float64], thresholds: NDArray[np.float64]
) -> tuple[NDArray[np.bool_], NDArray[np.intp]]:
    """Which rows are confidently in some class, and which (argmax over classes at threshold)."""
    import numpy as np

    # The small slack keeps a row whose probability equals the threshold up to float error.
    above = probs >= thresholds - 1e-6
    confident: NDArray[np.bool_] = np.asarray(above.any(axis=1))
    masked = np.where(above, probs, -np.inf)
    return confident, np.argmax(masked, axis=1).astype(np.intp)


def _calibrate(confident_joint: NDArray[np.int64], counts: NDArray[np.int64]) -> NDArray[np.int64]:
    """Scale each row of the confident joint so it sums to the number of rows with that label.

    This is the paper's calibration (Eq. 2): the confident joint undercounts rows that are in
    no class confidently, so each row is stretched to the observed label count.
    """
    import numpy as np

    row_sums = confident_joint.sum(axis=1, keepdims=True).astype(np.float64)
    scaled = np.divide(
        confident_joint * counts[:, None].astype(np.float64),
        row_sums,
        out=np.zeros(confident_joint.shape),
        where=row_sums > 0,
    )
    return _round_preserving_row_sums(scaled)


def _prune_counts(calibrated: NDArray[np.int64], counts: NDArray[np.int64]) -> NDArray[np.int64]:
    """Rows to remove per off-diagonal cell, leaving at least one row in every label class."""
    import numpy as np

    prune = calibrated.copy()
    np.fill_diagonal(prune, 0)
    for i in range(len(counts)):
        allowed = max(int(counts[i]) - 1, 0)
        total = int(prune[i].sum())
        if total > allowed:
            prune[i] = _round_preserving_row_sums((prune[i] * (allowed / total))[None, :])[0]
    return prune


def _top_rows(candidates: NDArray[np.intp], score: NDArray[np.float64], count: int) -> Any:
    """The ``count`` candidate rows with the largest score, ties to the lowest index."""
    import numpy as np

    order = np.lexsort((candidates, -score[candidates]))
    return candidates[order[:count]]


def _prune_by_noise_rate(
    probs: NDArray[np.float64], codes: NDArray[np.intp], prune: NDArray[np.int64]
) -> NDArray[np.bool_]:
    """Per cell (i, j), flag the rows labelled i with the largest margin p_j - p_i."""
    import numpy as np

    flagged = np.zeros(len(codes), dtype=bool)
    for i, j in zip(*np.nonzero(prune), strict=True):
        rows = np.flatnonzero(codes == i)
        margin = probs[:, j] - probs[:, i]
        flagged[_top_rows(rows, margin, int(prune[i, j]))] = True
    return flagged


def _prune_by_class(
    probs: NDArray[np.float64], codes: NDArray[np.intp], prune: NDArray[np.int64]
) -> NDArray[np.bool_]:
    """Per label class i, flag the sum_j prune[i, j] rows labelled i with lowest p_i."""
    import numpy as np

    flagged = np.zeros(len(codes), dtype=bool)
    for i, count in enumerate(prune.sum(axis=1)):
        if count > 0:
            rows = np.flatnonzero(codes == i)
            flagged[_top_rows(rows, -probs[:, i], int(count))] = True
    return flagged


def find_label_issues(
    labels: ArrayLike,
    pred_probs: ArrayLike,
    classes: Sequence[Any] | NDArray[Any],
    method: PruneMethod = "prune_by_noise_rate",
) -> LabelIssues:
    """Flag the rows whose given label is likely wrong, ranked by self-confidence.

    Implements confident learning (Northcutt et al., JAIR 2021). Per class j the threshold
    t_j is the mean of p_j over rows labelled j. A row is *confidently* of class j when
    p_j >= t_j (the argmax among such classes if several); counting given label i against
    confident class j gives the confident joint C, which is calibrated so row i sums to the
    number of rows labelled i. Dividing by n gives the estimated joint Q of given and true
    label, and Q's off-diagonal mass is the estimated noise rate.

    Parameters
    ----------
    labels
        The given label of each row, each one of ``classes``.
    pred_probs
        Out-of-sample predicted probabilities, shape (n_rows, n_classes), columns in the
        order of ``classes`` (see :func:`out_of_fold_probabilities`).
    classes
        The classes, in column order of ``pred_probs``.
    method
        ``"prune_by_noise_rate"`` (the paper's recommended default): for each off-diagonal
        cell (i, j) flag the n * Q[i, j] rows labelled i with the largest margin p_j - p_i.
        ``"prune_by_class"``: for each class i flag the n * sum_j Q[i, j] rows labelled i with
        the lowest p_i. ``"both"``: rows flagged by both. ``"confident_joint"``: the rows in
        the off-diagonal cells of the (uncalibrated) confident joint. ``"predicted_neq_given"``:
        rows whose argmax class differs from their label (the baseline).
        As in cleanlab, the pruning methods never flag a row whose argmax class is its label,
        and always leave at least one row in every class; all methods but
        ``"confident_joint"`` flag only rows whose label is not the model's top class.

    Returns
    -------
    LabelIssues
        Flagged rows, lowest self-confidence (p of the given label) first, ties by index.

    Raises
    ------
    DataError
        If ``pred_probs`` is not (n_rows, n_classes) or its rows are not distributions, a
        label is not among ``classes``, there are fewer than 2 classes, or ``method`` is
        unknown.
    """
    import numpy as np

    if method not in _METHODS:
        raise DataError(f"unknown method {method!r}; expected one of {', '.join(_METHODS)}")
    class_list = [_python(c) for c in np.asarray(classes, dtype=object).ravel()]
    codes = _encode(labels, class_list)
    n, k = len(codes), len(class_list)
    if n == 0:
        raise DataError("no rows: labels is empty")
    probs = _check_probabilities(pred_probs, n, k)

    counts = np.bincount(codes, minlength=k).astype(np.int64)
    thresholds = _confident_thresholds(probs, codes, k)
    confident, assigned = _confident_assignment(probs, thresholds)
    confident_joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(confident_joint, (codes[confident], assigned[confident]), 1)
    # An empty row could not be calibrated; one count on the diagonal says "no evidence of noise".
    np.fill_diagonal(confident_joint, np.maximum(confident_joint.diagonal(), 1))
    calibrated = _calibrate(confident_joint, counts)
    joint = calibrated / calibrated.sum()
    column_sums = joint.sum(axis=0, keepdims=True)
    noise_matrix = np.divide(joint, column_sums, out=np.zeros_like(joint), where=column_sums > 0)

    predicted = probs.argmax(axis=1)
    own = probs[np.arange(n), codes]
    # A label within float error of the top probability counts as the model's prediction.
    contradicted = probs.max(axis=1) > own + 1e-6
    if method == "confident_joint":
        flagged = confident & (assigned != codes)
    elif method == "predicted_neq_given":
        flagged = contradicted
    else:
        prune = _prune_counts(calibrated, counts)
        if method == "prune_by_noise_rate":
            flagged = _prune_by_noise_rate(probs, codes, prune)
        elif method == "prune_by_class":
            flagged = _prune_by_class(probs, codes, prune)
        else:
            flagged = _prune_by_noise_rate(probs, codes, prune) & _prune_by_class(
                probs, codes, prune
            )
        flagged &= contradicted

    rows = np.flatnonzero(flagged)
    ranked = rows[np.lexsort((rows, own[rows]))]
    return LabelIssues(
        indices=[int(r) for r in ranked],
        given=[class_list[codes[r]] for r in ranked],
        suggested=[class_list[predicted[r]] for r in ranked],
        self_confidence=[float(own[r]) for r in ranked],
        n_rows=n,
        estimated_noise_rate=float(joint.sum() - np.trace(joint)),
        method=method,
        per_class_thresholds={
            str(c): float(t) for c, t in zip(class_list, thresholds, strict=True)
        },
        classes=class_list,
        joint=joint.tolist(),
        noise_matrix=noise_matrix.tolist(),
    )


def out_of_fold_probabilities(
    estimator: Any,
    X: Any,
    y: ArrayLike,
    cv: int = 5,
    seed: int = 0,
    n_jobs: int | None = 1,
) -> tuple[NDArray[np.float64], NDArray[Any]]:
    """Predicted probabilities for every row from a model that never saw that row.

    Confident learning needs out-of-sample probabilities: a model scoring its own training rows
    has memorised their labels, noisy ones included. A clone of ``estimator`` is fitted on each
    of ``cv`` stratified, shuffled folds (seeded) and predicts the held-out fold.

    Returns
    -------
    tuple
        ``(proba, classes)``: an (n_rows, n_classes) array and the classes in sorted order,
        the column order of ``proba``.

    Raises
    ------
    DataError
        If ``cv`` < 2, rows of ``X`` and ``y`` differ, there are fewer than 2 classes, or a
        class has fewer rows than ``cv`` folds.
    """
    import numpy as np
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(y)
    if labels.ndim != 1:
        raise DataError(f"y must be one label per row (1-d), got shape {labels.shape}")
    if cv < 2:
        raise DataError(f"cv must be at least 2 folds, got {cv}")
    n_rows = X.shape[0] if hasattr(X, "shape") else len(X)
    if n_rows != len(labels):
        raise DataError(f"X has {n_rows} rows but y has {len(labels)} labels; expected equal")
    try:
        classes, counts = np.unique(labels, return_counts=True)
    except TypeError as exc:
        raise DataError(f"labels must be sortable values of one type: {exc}") from exc
    if len(classes) < 2:
        raise DataError(f"need at least 2 classes, got {[_python(c) for c in classes]!r}")
    small = {_python(c): int(m) for c, m in zip(classes, counts, strict=True) if m < cv}
    if small:
        raise DataError(
            f"every class needs at least cv={cv} rows for stratified folds; "
            f"these have fewer: {small!r}"
        )
    folds = list(StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed).split(X, labels))

    def held_out_proba(fold: int) -> NDArray[np.float64]:
        train, test = folds[fold]
        model = clone(estimator).fit(_rows(X, train), labels[train])
        # every class has >= cv rows, so every training fold holds every class, in order
        return np.asarray(model.predict_proba(_rows(X, test)), dtype=np.float64)

    # The folds are independent fits: they run on the current task runner (local processes,
    # at least ``n_jobs``, or Ray tasks), with the same probabilities on each.
    with use_runner(at_least(n_jobs)):
        parts = task_map(held_out_proba, range(cv))
    proba = np.empty((n_rows, len(classes)), dtype=np.float64)
    for (_, test), part in zip(folds, parts, strict=True):
        proba[test] = part
    return proba, classes


def _rows(data: Any, index: NDArray[np.intp]) -> Any:
    import numpy as np

    return data.iloc[index] if hasattr(data, "iloc") else np.asarray(data)[index]


def flip_labels(
    y: ArrayLike,
    rate: float,
    seed: int,
    classes: Sequence[Any] | NDArray[Any] | None = None,
) -> tuple[NDArray[Any], NDArray[np.intp]]:
    """Flip exactly round(rate * n) random rows to another class, to plant known label errors.

    Each chosen row gets a class drawn uniformly among the classes other than its own
    (uniform, class-independent noise), reproducibly for a given ``seed``.

    Returns
    -------
    tuple
        ``(flipped, flipped_indices)``: a copy of the labels with the flips, and the sorted
        indices of the flipped rows.

    Raises
    ------
    DataError
        If ``rate`` is outside [0, 1], fewer than 2 classes, or a label is not in ``classes``.
    """
    import numpy as np

    if not 0.0 <= rate <= 1.0:
        raise DataError(f"rate must be a fraction in [0, 1], got {rate}")
    original = np.asarray(y)
    if original.ndim != 1:
        raise DataError(f"y must be one label per row (1-d), got shape {original.shape}")
    class_values = np.unique(original) if classes is None else np.asarray(classes)
    codes = _encode(original, class_values)
    k = len(class_values)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(codes), size=round(rate * len(codes)), replace=False))
    # An offset in 1..k-1 added modulo k is a uniform draw among the other k-1 classes.
    new_codes = (codes[chosen] + rng.integers(1, k, size=len(chosen))) % k
    try:
        dtype = np.result_type(original.dtype, class_values.dtype)
    except TypeError:
        dtype = np.dtype(object)
    flipped = original.astype(dtype, copy=True)
    flipped[chosen] = class_values[new_codes]
    return flipped, chosen.astype(np.intp)


def precision_recall(flagged: Collection[int], truth: Collection[int]) -> tuple[float, float]:
    """Precision and recall of flagged row indices against the truly mislabeled ones.

    An empty ``flagged`` has precision 1 (no false alarms) and an empty ``truth`` has recall 1
    (nothing missed), so a clean dataset with nothing flagged scores (1, 1).
    """
    found = {int(i) for i in flagged}
    actual = {int(i) for i in truth}
    hits = len(found & actual)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(actual) if actual else 1.0
    return precision, recall
