"""Distillation extraction (Knockoff Nets) and output hardening, measured, on Phishing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mlwarden import datasets
from mlwarden.attacks._distillation import DistillationResult, extract_distillation
from mlwarden.attacks._output_hardening_cost import HardeningCostTable, hardening_cost
from mlwarden.errors import DataError, QueryBudgetExceeded
from mlwarden.models._adapter import SklearnAdapter
from mlwarden.models._output_hardening import HardenedModel, OutputHardening

BUDGETS = (100, 500, 2000)


class Phishing:
    def __init__(self) -> None:
        data = datasets.load("phishing")
        order = np.random.default_rng(0).permutation(len(data.X))
        self.schema = data.schema
        self.X_train = data.X.iloc[order[:3000]].reset_index(drop=True)
        self.y_train = data.y.iloc[order[:3000]].reset_index(drop=True)
        self.X_test = data.X.iloc[order[3000:4000]].reset_index(drop=True)
        self.y_test = data.y.iloc[order[3000:4000]].reset_index(drop=True)
        self.X_public = data.X.iloc[order[4000:7000]].reset_index(drop=True)
        self.model = LogisticRegression(max_iter=1000).fit(self.X_train, self.y_train)


@pytest.fixture(scope="module")
def phishing() -> Phishing:
    return Phishing()


class Counting:
    """An adapter that counts its calls and may hide its budget (an opaque rate limit)."""

    def __init__(self, estimator: Any, budget: int | None = None) -> None:
        self._adapter = SklearnAdapter(estimator, budget=budget)
        self.calls: list[int] = []

    @property
    def classes_(self) -> np.ndarray:
        return self._adapter.classes_

    @property
    def queries(self) -> int:
        return self._adapter.queries

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self.calls.append(len(X))
        return self._adapter.predict_proba(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        raise AssertionError("the attack must only read predict_proba")


def _distill(p: Phishing, model: Any, **kwargs: Any) -> DistillationResult:
    options: dict[str, Any] = {
        "X_test": p.X_test,
        "y_test": p.y_test,
        "schema": p.schema,
        "budgets": BUDGETS,
        "true_model": p.model,
        **kwargs,
    }
    return extract_distillation(model, p.X_train, **options)


def test_fidelity_rises_with_budget_and_queries_are_exact(phishing: Phishing) -> None:
    target = Counting(phishing.model)
    result = _distill(phishing, target)
    assert [point.budget for point in result.curve] == list(BUDGETS)
    # Every budget is a batch boundary; batches hold at most 1000 rows; the count is exact.
    assert target.calls == [100, 400, 500, 1000]
    assert result.queries == target.queries == max(BUDGETS)
    assert result.evaluation_queries == 0 and not result.stopped_early
    first, last = result.curve[0], result.curve[-1]
    assert first.fidelity_test is not None and last.fidelity_test is not None
    assert first.fidelity_uniform is not None and last.fidelity_uniform is not None
    assert last.fidelity_test > 0.95
    assert last.fidelity_test > first.fidelity_test + 0.01
    assert last.fidelity_uniform > first.fidelity_uniform + 0.02
    assert last.accuracy_test is not None and last.accuracy_test > 0.85
    assert result.soft_labels and result.output_mode == "probabilities"
    assert result.success_rate == last.fidelity_test
    assert result.queries_to_fidelity(0.9) == 100
    assert result.queries_to_fidelity(1.01) is None
    assert result.final_fidelity("uniform") == last.fidelity_uniform


def test_declared_budget_stops_the_curve_before_querying(phishing: Phishing) -> None:
    target = SklearnAdapter(phishing.model, budget=700)
    result = _distill(phishing, target)
    assert [point.budget for point in result.curve] == [100, 500]
    assert result.stopped_early and result.stop_reason is not None
    assert "700" in result.stop_reason
    assert result.queries == target.queries == 500
    assert result.budget == 700


def test_opaque_budget_refusal_stops_the_curve_cleanly(phishing: Phishing) -> None:
    target = Counting(phishing.model, budget=700)  # budget not declared to the attack
    result = _distill(phishing, target, batch_size=200)
    assert [point.budget for point in result.curve] == [100, 500]
    assert result.stopped_early and result.stop_reason is not None
    assert "refused" in result.stop_reason
    assert result.queries == target.queries == 600  # the last answered batch ends at 600
    assert result.budget is None


def test_evaluation_without_true_model_is_counted_apart(phishing: Phishing) -> None:
    target = SklearnAdapter(phishing.model)
    result = _distill(phishing, target, budgets=(100,), true_model=None, n_uniform=50)
    assert result.queries == 100
    assert result.evaluation_queries == 50 + len(phishing.X_test)
    assert target.queries == 100 + result.evaluation_queries


def test_public_source_draws_from_the_public_rows(phishing: Phishing) -> None:
    target = SklearnAdapter(phishing.model)
    result = _distill(phishing, target, source="public", X_public=phishing.X_public, budgets=(500,))
    assert result.source == "public" and result.queries == 500
    assert result.curve[0].fidelity_test is not None and result.curve[0].fidelity_test > 0.95
    # Fewer public rows than queries: sampled with replacement.
    small = _distill(
        phishing, SklearnAdapter(phishing.model), source="public",
        X_public=phishing.X_public.iloc[:50], budgets=(200,),
    )  # fmt: skip
    assert small.queries == 200
    with pytest.raises(DataError):
        _distill(phishing, SklearnAdapter(phishing.model), source="public", budgets=(100,))


def test_label_only_outputs_train_on_hard_labels(phishing: Phishing) -> None:
    target = HardenedModel(SklearnAdapter(phishing.model), OutputHardening(mode="label"))
    result = _distill(phishing, target, budgets=(200,))
    assert result.output_mode == "label" and not result.soft_labels
    assert result.queries == 200


def test_bad_budgets_are_refused(phishing: Phishing) -> None:
    with pytest.raises(ValueError, match="budgets"):
        _distill(phishing, SklearnAdapter(phishing.model), budgets=(0, 100))
    with pytest.raises(ValueError, match="batch_size"):
        _distill(phishing, SklearnAdapter(phishing.model), batch_size=0)


@pytest.fixture(scope="module")
def table(phishing: Phishing) -> HardeningCostTable:
    return hardening_cost(
        phishing.model,
        phishing.X_train,
        phishing.X_test,
        y_test=phishing.y_test,
        schema=phishing.schema,
        budgets=BUDGETS,
    )


def test_equation_solving_is_exact_on_full_probabilities(
    phishing: Phishing, table: HardeningCostTable
) -> None:
    row = table.row("probabilities", "equation_solving")
    d_plus_1 = phishing.X_train.shape[1] + 1
    assert row.applicable and row.reason is None
    assert row.final_fidelity == 1.0
    assert [row.queries_to(t) for t in (0.9, 0.95, 0.99)] == [d_plus_1] * 3
    assert row.queries_spent == d_plus_1


def test_rounding_costs_equation_solving_fidelity_or_queries(
    phishing: Phishing, table: HardeningCostTable
) -> None:
    d_plus_1 = phishing.X_train.shape[1] + 1
    row = table.row("rounded", "equation_solving")
    assert row.applicable
    # With only d + 1 rounded answers the solution is off; least squares needs more rows.
    assert row.curve[0][0] >= d_plus_1 and row.curve[0][1] < 1.0
    needed = row.queries_to(0.99)
    assert needed is None or needed > d_plus_1
    ratio = next(cost.cost_ratio for cost in row.costs if cost.target == 0.99)
    assert needed is None or (ratio is not None and ratio > 1.0)


def test_equation_solving_is_not_applicable_to_labels(table: HardeningCostTable) -> None:
    row = table.row("label", "equation_solving")
    assert not row.applicable
    assert row.reason is not None and "label" in row.reason
    assert row.queries_spent == 0 and row.costs == [] and row.final_fidelity is None
    # Two classes: the top-1 confidence gives the other probability, so equations still apply.
    assert table.row("top1", "equation_solving").applicable


def test_label_only_costs_the_thief_more(table: HardeningCostTable) -> None:
    probabilities = table.row("probabilities", "distillation")
    label = table.row("label", "distillation")
    assert probabilities.queries_spent == label.queries_spent == max(BUDGETS)
    q_prob, q_label = probabilities.queries_to(0.95), label.queries_to(0.95)
    assert q_prob is not None
    lower_somewhere = any(
        lf < pf for (_, lf), (_, pf) in zip(label.curve, probabilities.curve, strict=True)
    )
    assert q_label is None or q_label >= q_prob or lower_somewhere
    # The cheapest attack on full probabilities (equations) beats anything on labels.
    for target in table.fidelity_targets:
        ratio = table.cost_ratio("label", target)
        assert ratio is None or ratio > 1.0
    assert table.cost_ratio("probabilities", 0.9) == 1.0
    assert table.cheapest("label", 0.9) is not None


def test_line_search_prices_label_only_outputs(
    phishing: Phishing, table: HardeningCostTable
) -> None:
    # Labels alone give the linear model away within 20 (d + 1) queries (Lowd & Meek; Tramer
    # et al. 2016 §6): hiding the probabilities costs the thief ~20x, not "not reached".
    d_plus_1 = phishing.X_train.shape[1] + 1
    row = table.row("label", "line_search")
    assert row.applicable and row.reason is None
    needed = row.queries_to(0.99)
    assert needed is not None and d_plus_1 < needed <= 20 * d_plus_1
    assert table.cheapest("label", 0.99) == needed
    assert table.cost_ratio("label", 0.99) == needed / d_plus_1
    # Every run stays within its budget; the curve ends once the copy is exact.
    queries = [q for q, _ in row.curve]
    assert queries == sorted(queries) and queries[-1] <= max(BUDGETS)
    assert row.final_fidelity == 1.0 and row.queries_spent == sum(q for q, _ in row.curve)
    # Every output reveals the label, so the same attack runs against each.
    assert all(table.row(mode, "line_search").applicable for mode in ("probabilities", "top1"))


def test_non_logistic_target_skips_equation_solving(phishing: Phishing) -> None:
    tree = DecisionTreeClassifier(max_depth=6, random_state=0)
    tree.fit(phishing.X_train, phishing.y_train)
    small = hardening_cost(
        tree,
        phishing.X_train,
        phishing.X_test,
        schema=phishing.schema,
        modes=("probabilities",),
        budgets=(200,),
    )
    row = small.row("probabilities", "equation_solving")
    assert not row.applicable and row.reason is not None and "logistic" in row.reason
    line = small.row("probabilities", "line_search")
    assert not line.applicable and line.reason == "the target is not a linear model"
    distilled = small.row("probabilities", "distillation")
    assert distilled.applicable and distilled.queries_spent == 200
    with pytest.raises(KeyError):
        small.row("label", "distillation")


def test_budgeted_adapter_refusal_is_reported_not_raised(phishing: Phishing) -> None:
    adapter = SklearnAdapter(phishing.model, budget=50)
    result = _distill(phishing, adapter, budgets=(100,))
    assert result.curve == [] and result.stopped_early and result.queries == 0
    assert np.isnan(result.success_rate)
    with pytest.raises(QueryBudgetExceeded):
        adapter.predict_proba(phishing.X_test.iloc[:51])
