"""HopSkipJump: the decision-based black-box evasion attack, sharing one query budget over points.

Reference: Jianbo Chen, Michael I. Jordan, Martin J. Wainwright, "HopSkipJumpAttack: A
Query-Efficient Decision-Based Attack", IEEE Symposium on Security and Privacy 2020
(arXiv:1904.02144). The attack sees only the model's decisions (``predict``), never scores.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlwarden.attacks._hopskipjump_search import FloatArray, Norm, Oracle, SearchState
from mlwarden.attacks._result import AttackResult, plain
from mlwarden.errors import ParameterError
from mlwarden.models import ModelAdapter

__all__ = ["HopSkipJumpResult", "hop_skip_jump"]

_N_EXAMPLES = 3


class HopSkipJumpResult(AttackResult):
    """What HopSkipJump found: per-point perturbations, the adversarial points, and the curve.

    ``perturbation[i]`` is the ``norm`` distance from point ``i`` to its adversarial point
    (0.0 for a point the model already got wrong, or already put in the target class; None
    where none was found within the budget). ``median_perturbation`` counts failures as
    infinitely far, so it is None when half the points or more failed. ``curve`` holds
    ``(queries_spent, median_perturbation)`` pairs after the start and after every iteration,
    ``queries_spent`` counting all points together.
    """

    norm: Norm
    perturbation: list[float | None]
    median_perturbation: float | None
    adversarial: list[list[float] | None]
    queries_per_point: list[int]
    curve: list[tuple[int, float | None]]


def _as_clip(clip: Any, d: int) -> tuple[FloatArray, FloatArray]:
    try:
        lo_raw, hi_raw = clip
    except (TypeError, ValueError):
        raise ParameterError(
            f"clip must be a pair (min, max) of numbers or of arrays of {d} features, got {clip!r}"
        ) from None
    try:
        lo = np.broadcast_to(np.asarray(lo_raw, dtype=np.float64), (d,)).copy()
        hi = np.broadcast_to(np.asarray(hi_raw, dtype=np.float64), (d,)).copy()
    except (TypeError, ValueError):
        raise ParameterError(
            f"clip bounds must be numbers or arrays of {d} features, got shapes "
            f"{np.shape(lo_raw)} and {np.shape(hi_raw)}"
        ) from None
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
        raise ParameterError(f"clip must have finite min < max for every feature, got {clip!r}")
    return lo, hi


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _label_array(name: str, labels: Any, n: int) -> NDArray[Any]:
    out = np.empty(n, dtype=object)
    flat = np.asarray(labels, dtype=object).reshape(-1)
    if np.ndim(labels) != 1 or len(flat) != n:
        raise ParameterError(
            f"{name} must hold one label per row of X ({n}), got shape {np.shape(labels)}"
        )
    out[:] = list(flat)
    return out


def hop_skip_jump(
    model: ModelAdapter,
    X: Any,
    y: Any = None,
    *,
    norm: Norm = "l2",
    max_iter: int = 40,
    init_evals: int = 100,
    max_evals: int = 10_000,
    gamma: float = 1.0,
    init_trials: int = 1_000,
    clip: tuple[Any, Any] = (0.0, 1.0),
    budget: int | None = None,
    seed: int = 0,
    targeted: bool = False,
    target: Any = None,
) -> HopSkipJumpResult:
    """Find small adversarial perturbations with HopSkipJump, from the model's decisions alone.

    Implements Chen, Jordan and Wainwright, "HopSkipJumpAttack: A Query-Efficient
    Decision-Based Attack", IEEE S&P 2020, with the defaults of the authors' code. Each point
    starts from uniform noise in the ``clip`` box that the model labels adversarially, pulled
    toward the original by binary search. Each iteration ``t`` then estimates the direction of
    the gradient of the decision at the boundary from ``min(init_evals * sqrt(t), max_evals)``
    random probes on a sphere (L2) or cube (Linf) of radius ``delta`` (baseline subtraction
    reduces the variance), steps along it (its sign for Linf) by a geometric step search from
    ``dist / sqrt(t)``, clips to the box and binary-searches back to the boundary. As in the
    paper, ``theta = gamma / d**1.5`` (L2) or ``gamma / d**2`` (Linf) and
    ``delta = sqrt(d) * theta * dist`` (L2) or ``d * theta * dist`` (Linf), ``0.1`` times
    the mean box width in the first iteration; the binary search stops at ``theta`` relative
    precision (L2) or ``min(theta * dist, theta)`` (Linf), with ``theta`` capped at 1e-3 for
    the search only, as the paper's is coarse in few dimensions (0.35 at d=2, L2). Only
    ``model.predict`` is called, and all points are attacked in lockstep so one call carries
    every point's queries of a step. Every point returned is one the model labelled
    adversarial; the closest one found is kept, not merely the last.

    Parameters
    ----------
    model
        The model under attack; only its ``predict`` (labels) is used.
    X
        Points to attack, a 2-D array (or DataFrame, whose columns are passed on) inside ``clip``.
    y
        Their true labels (untargeted attack only). By default the model's own predictions.
        A point the model already gets wrong (untargeted) or already puts in the target class
        (targeted) counts as a success with perturbation 0 and is not attacked.
    norm
        ``"l2"`` or ``"linf"``: the distance minimised and reported.
    max_iter
        Iterations per point (40 in the authors' code).
    init_evals, max_evals
        Monte-Carlo probes of the first gradient estimate, and their cap.
    gamma
        Scale of the binary-search threshold ``theta`` (1.0 in the authors' code).
    init_trials
        Uniform random draws tried per point to find a starting adversarial point.
    clip
        ``(min, max)``: numbers, or arrays with one bound per feature; the box every query
        stays in.
    budget
        Rows the whole call may send to the model (None: unlimited). Point ``i`` gets
        ``budget // n`` (plus one for the first ``budget % n`` points), including its one
        query to read its current label, and stops when its share is spent. A
        ``QueryBudgetExceeded`` from the adapter ends the points it refused, keeping what
        they had found.
    seed
        Seed of the random draws. Point ``i`` draws from its own stream (the ``i``-th spawned
        from ``seed``), so its result does not depend on the points after it.
    targeted, target
        With ``targeted=True``, look for points the model puts in ``target`` (one label, or
        one per point) instead of any other class.

    Returns
    -------
    HopSkipJumpResult
        ``success_rate`` is the share of points with an adversarial point found within budget.

    Raises
    ------
    ValueError
        On a malformed ``X``, ``y``, ``clip``, ``norm``, budget or count, or a point outside
        ``clip``.
    """
    started = time.perf_counter()
    columns = [*X.columns] if hasattr(X, "columns") and hasattr(X, "to_numpy") else None
    try:
        x0 = np.array(X.to_numpy() if columns is not None else X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"X must be a 2-D array of numbers, got {type(X).__name__}") from exc
    if x0.ndim != 2 or x0.shape[0] == 0 or x0.shape[1] == 0:
        raise ParameterError(f"X must be a non-empty 2-D array (points x features), got {x0.shape}")
    if not np.all(np.isfinite(x0)):
        raise ParameterError("X must be finite, got NaN or infinite values")
    n, d = x0.shape
    if norm not in ("l2", "linf"):
        raise ParameterError(f"norm must be 'l2' or 'linf', got {norm!r}")
    max_iter = _check_int("max_iter", max_iter, 0)
    init_evals = _check_int("init_evals", init_evals, 1)
    max_evals = _check_int("max_evals", max_evals, init_evals)
    init_trials = _check_int("init_trials", init_trials, 1)
    if budget is not None:
        budget = _check_int("budget", budget, 0)
    if not (isinstance(gamma, int | float) and math.isfinite(gamma) and gamma > 0):
        raise ParameterError(f"gamma must be a positive number, got {gamma!r}")
    lo, hi = _as_clip(clip, d)
    if np.any(x0 < lo) or np.any(x0 > hi):
        raise ParameterError(
            "X must lie inside the clip box; pass clip=(min, max) matching the data's range, "
            f"got X in [{x0.min()}, {x0.max()}] and clip={clip!r}"
        )
    y_true = None if y is None else _label_array("y", y, n)
    goal = np.empty(n, dtype=object)
    if targeted:
        if target is None:
            raise ParameterError("targeted=True needs target: one label, or one per row of X")
        goal = _label_array("target", target, n) if np.ndim(target) else np.full(n, target, object)
    elif target is not None:
        raise ParameterError(f"target={target!r} is given but targeted=False; set targeted=True")

    if budget is None:
        shares = None
    else:
        shares = np.full(n, budget // n, dtype=np.int64)
        shares[: budget % n] += 1
    start_queries = model.queries
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]

    # The first query of each point reads its current label; nothing is adversarial yet.
    oracle = Oracle(model, np.empty(n, dtype=object), False, shares, columns)
    everyone = np.arange(n, dtype=np.int64)
    now, read = oracle.predict(everyone, x0)
    if y_true is None:
        y_true = now
    if targeted:
        oracle.labels, oracle.targeted = goal, True
        trivial = read & (now == goal)
    else:
        oracle.labels = y_true
        trivial = read & (now != y_true)
    trivial = np.asarray(trivial, dtype=bool)

    state = SearchState(x0, oracle, norm, lo, hi, gamma)
    state.found[trivial] = True
    state.best[trivial] = x0[trivial]
    state.best_dist[trivial] = 0.0
    state.best_label[trivial] = now[trivial]
    state.curve_point()

    attack = np.flatnonzero(read & ~trivial)
    state.initialise(attack, rngs, init_trials)
    state.curve_point()
    live = state.live(attack)
    for t in range(1, max_iter + 1):
        if len(live) == 0:
            break
        state.iterate(live, t, rngs, init_evals, max_evals)
        state.curve_point()
        live = state.live(live)

    perturbation = [float(v) if state.found[i] else None for i, v in enumerate(state.best_dist)]
    adversarial = [state.best[i].tolist() if state.found[i] else None for i in range(n)]
    examples: list[dict[str, Any]] = []
    for i in sorted(np.flatnonzero(state.found & ~trivial), key=lambda i: state.best_dist[i]):
        if len(examples) == _N_EXAMPLES:
            break
        examples.append(
            {
                "index": int(i),
                "original": x0[i].tolist(),
                "adversarial": state.best[i].tolist(),
                "perturbation": float(state.best_dist[i]),
                "original_label": plain(now[i]),
                "adversarial_label": plain(state.best_label[i]),
            }
        )
    return HopSkipJumpResult(
        attack="hop_skip_jump",
        n_points=n,
        success_rate=float(np.mean(state.found)),
        queries=model.queries - start_queries,
        budget=budget,
        wall_time_s=time.perf_counter() - started,
        params={
            "norm": norm,
            "max_iter": max_iter,
            "init_evals": init_evals,
            "max_evals": max_evals,
            "gamma": gamma,
            "init_trials": init_trials,
            "clip": [_bounds(lo), _bounds(hi)],
            "seed": seed,
            "targeted": targeted,
            "target": None if target is None else _labels(target),
        },
        examples=examples,
        norm=norm,
        perturbation=perturbation,
        median_perturbation=state.median(),
        adversarial=adversarial,
        queries_per_point=[int(q) for q in oracle.spent],
        curve=state.curve,
    )


def _bounds(v: FloatArray) -> float | list[float]:
    return float(v[0]) if np.all(v == v[0]) else [float(b) for b in v]


def _labels(target: Any) -> Any:
    if np.ndim(target) == 0:
        return plain(target)
    return [plain(t) for t in np.asarray(target, dtype=object).reshape(-1)]
