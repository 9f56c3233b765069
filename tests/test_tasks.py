"""Work items mapped over runners: same results in the same order on every engine."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from mlwarden._tasks import (
    JoblibRunner,
    RayRunner,
    current_runner,
    item_seeds,
    task_map,
    use_runner,
)
from mlwarden.attacks import lira
from mlwarden.errors import ParameterError
from mlwarden.models import SklearnAdapter
from tests.attacks.test_distillation import Phishing, _distill
from tests.attacks.test_membership import split, tree


def _draw(seed: int) -> tuple[int, float]:
    return os.getpid(), float(np.random.default_rng(seed).random())


def test_item_seeds_depend_only_on_the_seed_and_the_position() -> None:
    assert item_seeds(7, 3) == item_seeds(7, 5)[:3]
    assert item_seeds(7, 3) != item_seeds(8, 3)
    assert len(set(item_seeds(0, 100))) == 100


def test_local_workers_return_the_serial_results_in_item_order() -> None:
    seeds = item_seeds(0, 8)
    serial = JoblibRunner(1).map(_draw, seeds)
    parallel = JoblibRunner(2).map(_draw, seeds)
    assert [v for _, v in parallel] == [v for _, v in serial]
    assert {pid for pid, _ in serial} == {os.getpid()}
    assert os.getpid() not in {pid for pid, _ in parallel}


def test_use_runner_scopes_the_runner_and_restores_the_default() -> None:
    default = current_runner()
    assert default.name == "local" and default.workers == 1
    with use_runner(JoblibRunner(2)) as runner:
        assert current_runner() is runner
        assert [v for _, v in task_map(_draw, [1, 2])] == [v for _, v in map(_draw, [1, 2])]
    assert current_runner() is default
    with pytest.raises(ParameterError, match="n_jobs"):
        JoblibRunner(0)


def _lira_scores() -> tuple[float, dict[float, float]]:
    s = split(150)
    model = SklearnAdapter(tree().fit(*s["train"]))
    result = lira(model, *s["cand"], s["member"], *s["pop"], tree, n_reference=4, n_bootstrap=20)
    return result.auc, result.tpr_at_fpr


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _distillation_curve(phishing: Phishing) -> list[tuple[int, float | None, float | None]]:
    result = _distill(phishing, SklearnAdapter(phishing.model))
    return [(p.budget, p.fidelity_test, p.fidelity_uniform) for p in result.curve]


def test_attacks_are_the_same_on_one_worker_two_processes_and_ray(ray_cluster: None) -> None:
    phishing = Phishing()
    serial = _lira_scores(), _distillation_curve(phishing)
    with use_runner(JoblibRunner(2)):
        assert (_lira_scores(), _distillation_curve(phishing)) == serial
    with use_runner(RayRunner()) as runner:
        assert runner.name == "ray" and runner.workers == 2
        assert (_lira_scores(), _distillation_curve(phishing)) == serial
        assert [v for _, v in task_map(_draw, [3, 4])] == [v for _, v in map(_draw, [3, 4])]
