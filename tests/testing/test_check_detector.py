"""check_detector passes every shipped extraction detector and fails broken ones by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

import pytest
from numpy.typing import ArrayLike

from mlwarden.serve._extraction import (
    BenignTraffic,
    BoundaryDetector,
    Detector,
    DetectorSuite,
    OffManifoldDetector,
    Pattern,
    PradaDetector,
    RarityDetector,
    Verdict,
)
from mlwarden.testing._detector import DETECTOR_CHECKS, check_detector

SHIPPED: dict[str, Callable[[], Detector]] = {
    "prada": PradaDetector,
    "boundary": BoundaryDetector,
    "off_manifold": OffManifoldDetector,
    "rarity": RarityDetector,
    "suite": lambda: DetectorSuite(
        [PradaDetector(), BoundaryDetector(), OffManifoldDetector(), RarityDetector()]
    ),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_detector_passes(name: str) -> None:
    check_detector(SHIPPED[name])


class SharedState:
    """Broken on purpose: judges every client on one shared window."""

    name = "shared"
    catches: frozenset[Pattern] = frozenset({"boundary"})

    def __init__(self) -> None:
        self.inner = BoundaryDetector(name=self.name)

    def fit(self, benign: BenignTraffic) -> Self:
        self.inner.fit(benign)
        return self

    def observe_answer(self, client: str, x: ArrayLike, proba: ArrayLike) -> Verdict:
        verdict = self.inner.observe_answer("everyone", x, proba)
        return verdict.model_copy(update={"client": client})

    def reset(self, client: str) -> None:
        self.inner.reset("everyone")


class Boasting(PradaDetector):
    """Broken on purpose: claims uniform queries, which PRADA does not see."""

    catches: frozenset[Pattern] = frozenset({"perturbation", "uniform"})


def test_a_detector_sharing_state_across_clients_fails_by_name() -> None:
    with pytest.raises(AssertionError, match="clients_are_independent failed"):
        check_detector(SharedState)


def test_a_detector_claiming_a_pattern_it_misses_fails_by_name() -> None:
    with pytest.raises(AssertionError, match=r"alarms_on_claimed_patterns failed.*'uniform'"):
        check_detector(Boasting)


def test_the_checks_have_distinct_names() -> None:
    names = [name for name, _ in DETECTOR_CHECKS]
    assert len(set(names)) == len(names) >= 7
