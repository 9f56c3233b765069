"""Canary exposure (the Secret Sharer): planted secrets are exposed, controls are not."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from mlwarden.attacks._canary import (  # noqa: E402
    Canary,
    CanaryExposureResult,
    CandidateSpace,
    canary_exposure,
    exposure_by_rank,
    exposure_by_skew_normal,
    insert_canaries,
    measure_canaries,
    random_canaries,
)
from mlwarden.datasets import load_text  # noqa: E402
from mlwarden.errors import DataError  # noqa: E402
from mlwarden.models._charlm import CharLM, CharLMConfig, train_char_lm  # noqa: E402

CORPUS = load_text("pydoc")
CARD = Canary(format="my card number is {secret}", space=CandidateSpace(length=6))
REPEATS = 25


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core box, two threads contend and run far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def secrets() -> list[str]:
    return random_canaries(CARD, 4, seed=0)


@pytest.fixture(scope="module")
def model(secrets: list[str]) -> CharLM:
    """A GRU-128 char LM trained for 250 steps (about 10 s on one core) on 60 KB of docstrings
    holding 4 canaries 25 times each."""
    text = CORPUS[:60_000]
    planted = insert_canaries(text, [CARD.line(s) for s in secrets], REPEATS, seed=0)
    config = CharLMConfig(hidden=128, seq_len=64)
    return train_char_lm(planted, config=config, steps=250, batch_size=32, seed=0)


@pytest.fixture(scope="module")
def exact(model: CharLM, secrets: list[str]) -> CanaryExposureResult:
    return measure_canaries(model, [CARD.line(s) for s in secrets], n_controls=4)


def test_inserted_canaries_are_exposed_and_controls_are_not(
    exact: CanaryExposureResult, secrets: list[str]
) -> None:
    inserted = [c for c in exact.canaries if c.inserted]
    controls = [c for c in exact.canaries if not c.inserted]
    assert [c.secret for c in inserted] == secrets
    assert len(controls) == 4 and not {c.secret for c in controls} & set(secrets)
    assert all(c.method == "rank" and c.rank is not None for c in exact.canaries)
    assert all(c.max_exposure == pytest.approx(6 * math.log2(10)) for c in exact.canaries)
    # log2(10**6) = 19.9 bits at most; a random secret has about 1 bit on average.
    assert min(c.exposure for c in inserted) > 12
    assert max(c.exposure for c in controls) < 6
    assert exact.mean_exposure_control is not None and exact.mean_exposure_control < 3
    assert exact.max_exposure_inserted == max(c.exposure for c in inserted)
    assert exact.max_exposure_control == max(c.exposure for c in controls)
    for c in exact.canaries:
        assert c.exposure == pytest.approx(c.max_exposure - math.log2(c.rank or 0))
    assert exact.queries == 10**6  # one enumeration shared by the 8 secrets of one format
    assert exact.attack == "canary_exposure" and exact.n_points == 8


def test_skew_normal_estimate_agrees_with_the_exact_rank(
    model: CharLM, exact: CanaryExposureResult
) -> None:
    lines = [c.line for c in exact.canaries]
    estimate = canary_exposure(
        model,
        CARD,
        [c.secret for c in exact.canaries],
        inserted=[bool(c.inserted) for c in exact.canaries],
        method="skew_normal",
        n_samples=5000,
        seed=0,
    )
    assert [CARD.line(c.secret) for c in estimate.canaries] == lines
    assert estimate.queries == 5000 + 8
    for rank, approx in zip(exact.canaries, estimate.canaries, strict=True):
        assert approx.method == "skew_normal" and approx.rank is None
        assert approx.log_perplexity == pytest.approx(rank.log_perplexity, abs=1e-3)
        tolerance = 5.0 if rank.inserted else 1.0
        assert abs(approx.exposure - rank.exposure) < tolerance, (rank, approx)


def test_the_most_likely_secret_has_the_largest_exposure(model: CharLM) -> None:
    canary = Canary(format="port {secret}/tcp", space=CandidateSpace(length=3))
    scores = model.enumerate_log_perplexity("0123456789", 3, prefix="\nport ", suffix="/tcp")
    best = f"{int(np.argmin(scores)):03d}"
    found = exposure_by_rank(model, canary, best)
    assert found.rank == 1
    assert found.exposure == pytest.approx(math.log2(1000))
    worst = exposure_by_rank(model, canary, f"{int(np.argmax(scores)):03d}")
    assert worst.rank == 1000 and worst.exposure == pytest.approx(0.0)


def test_large_spaces_use_the_skew_normal_estimate(model: CharLM, secrets: list[str]) -> None:
    big = Canary(format="my card number is {secret}", space=CandidateSpace(length=9))
    with pytest.raises(ValueError, match="skew-normal"):
        exposure_by_rank(model, big, "123456789")
    lines = [f"my card number is {s}000" for s in secrets[:1]]
    result = measure_canaries(model, lines, n_controls=2, n_samples=1000)
    assert [c.method for c in result.canaries] == ["skew_normal"] * 3
    assert result.queries == 1000 + 3
    assert all(0 <= c.exposure <= 9 * math.log2(10) for c in result.canaries)
    single = exposure_by_skew_normal(model, big, "123456789", n_samples=1000, seed=0)
    assert single.n_scored == 1001 and single.rank is None


def test_measure_canaries_infers_the_secret_and_rejects_lines_without_one(model: CharLM) -> None:
    result = measure_canaries(model, ["pin: 1234", "pin: 5678"], n_controls=3, seed=0)
    assert [c.secret for c in result.canaries][:2] == ["1234", "5678"]
    assert [c.inserted for c in result.canaries] == [True, True, False, False, False]
    assert {c.line[:5] for c in result.canaries} == {"pin: "}
    assert all(c.max_exposure == pytest.approx(4 * math.log2(10)) for c in result.canaries)
    hexed = measure_canaries(
        model, ["key=00ff"], space=CandidateSpace(alphabet="0123456789abcdef", length=2)
    )
    assert hexed.canaries[0].secret == "ff" and hexed.canaries[0].line == "key=00ff"
    with pytest.raises(DataError, match="does not end with a secret"):
        measure_canaries(model, ["no secret here"])
    with pytest.raises(DataError, match="outside"):
        measure_canaries(
            model, ["key=00fg"], space=CandidateSpace(alphabet="0123456789abcdef", length=2)
        )
    with pytest.raises(DataError, match="no canary lines"):
        measure_canaries(model, [])


def test_canary_formats_and_secrets_are_validated() -> None:
    with pytest.raises(ValidationError, match="exactly once"):
        Canary(format="{secret} and {secret}")
    with pytest.raises(ValidationError, match="exactly once"):
        Canary(format="no slot")
    with pytest.raises(ValidationError, match="distinct"):
        CandidateSpace(alphabet="00")
    with pytest.raises(DataError, match="characters; need 6"):
        CARD.line("123")
    with pytest.raises(DataError, match="'x' at position 2"):
        CARD.line("12x456")
    assert CARD.space.index("000010") == 10
    assert CARD.line("000010") == "my card number is 000010"


def test_random_canaries_are_seeded_distinct_and_avoid_excluded_secrets() -> None:
    small = Canary(format="{secret}", space=CandidateSpace(alphabet="ab", length=3))
    drawn = random_canaries(small, 6, seed=5, exclude=["aaa", "bbb"])
    assert len(set(drawn)) == 6 and not {"aaa", "bbb"} & set(drawn)
    assert drawn == random_canaries(small, 6, seed=5, exclude=["aaa", "bbb"])
    assert random_canaries(CARD, 3, seed=1) != random_canaries(CARD, 3, seed=2)
    with pytest.raises(ValueError, match="cannot draw"):
        random_canaries(small, 7, seed=0, exclude=["aaa", "bbb"])


@settings(max_examples=50, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="ab \n", max_size=8), max_size=6).map("\n".join),
    repeats=st.lists(st.integers(0, 4), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_insertion_adds_whole_lines_and_keeps_the_text(
    lines: str, repeats: list[int], seed: int
) -> None:
    canaries = [f"canary {i} {{c}}" for i in range(len(repeats))]
    planted = insert_canaries(lines, canaries, repeats, seed=seed)
    assert planted == insert_canaries(lines, canaries, repeats, seed=seed)
    out = planted.split("\n")
    for line, count in zip(canaries, repeats, strict=True):
        assert out.count(line) == count
    kept = [line for line in out if line not in canaries]
    assert "\n".join(kept) == lines
