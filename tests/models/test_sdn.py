"""Early-exit networks: exits and compute on a hand-built model, efficacy, calibration, saving."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mlwarden.errors import DataError, ModelError  # noqa: E402
from mlwarden.models._sdn import (  # noqa: E402
    EarlyExitNetwork,
    ExitHead,
    calibrate_threshold,
    digits_sdn,
    efficacy,
    load_sdn,
    measure_latency,
    save_sdn,
    train_sdn,
)
from mlwarden.models._sdn._calibration import _all_probs, _simulate  # noqa: E402
from mlwarden.models._torch import load_digits_split  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core box, two threads contend and run far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def linear(weight: list[list[float]]) -> torch.nn.Module:
    """A bias-free float64 linear layer with the given weights."""
    layer = torch.nn.Linear(len(weight[0]), len(weight), bias=False, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float64))
    return layer


@pytest.fixture
def tiny() -> EarlyExitNetwork:
    """Three identity blocks (4 MACs each) and three heads (4 MACs each) on 2 features.

    IC 0 is confident when |x0| is large, IC 1 when |x1| is, the final head never is.
    Exit costs: 8, 16, 24 MACs, so fractions 1/3, 2/3, 1.
    """
    eye = [[1.0, 0.0], [0.0, 1.0]]
    blocks = [linear(eye), linear(eye), linear(eye)]
    heads: list[torch.nn.Module | None] = [
        linear([[10.0, 0.0], [0.0, 0.0]]),
        linear([[0.0, 10.0], [0.0, 0.0]]),
        linear([[0.0, 0.0], [0.0, 0.0]]),
    ]
    return EarlyExitNetwork(blocks, heads, (2,))


@pytest.fixture(scope="module")
def trained() -> tuple[EarlyExitNetwork, object]:
    split = load_digits_split()
    model = train_sdn(digits_sdn(8, seed=0), split.X_train, split.y_train, epochs=6, seed=0)
    return model, split


def test_costs_are_counted_from_shapes(tiny: EarlyExitNetwork) -> None:
    assert tiny.block_costs == (4.0, 4.0, 4.0)
    assert tiny.head_costs == (4.0, 4.0, 4.0)
    assert tiny.exit_costs == (8.0, 16.0, 24.0)
    assert tiny.exit_fractions == pytest.approx((1 / 3, 2 / 3, 1.0))


def test_digits_costs_match_the_conv_arithmetic() -> None:
    model = digits_sdn(4, pool_size=1)
    w = 4
    convs = [64 * 9 * w, 64 * 9 * w * w, 64 * 9 * w * 2 * w, 16 * 9 * 4 * w * w, 16 * 9 * 8 * w * w]
    assert model.block_costs == (convs[0] + convs[1], convs[2], convs[3], convs[4])
    assert model.head_costs == (w * 10, 2 * w * 10, 2 * w * 10, 4 * w * 10)


def test_each_input_leaves_where_its_confidence_says(tiny: EarlyExitNetwork) -> None:
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [-1.0, 0.0]])
    out = tiny.infer(X, threshold=0.9)
    assert list(out.exit_index) == [0, 1, 2, 0]
    assert list(out.predictions) == [0, 0, 0, 1]
    assert out.compute_fraction == pytest.approx([1 / 3, 2 / 3, 1.0, 1 / 3])
    assert not out.capped.any()
    assert out.mean_compute == pytest.approx((1 / 3 + 2 / 3 + 1 + 1 / 3) / 4)
    assert out.efficacy == pytest.approx(1 - out.mean_compute)
    assert out.accuracy([0, 0, 1, 1]) == pytest.approx(0.75)


def test_outputs_of_every_exit(tiny: EarlyExitNetwork) -> None:
    outs = tiny.forward_all(torch.tensor([[0.5, 0.2]], dtype=torch.float64))
    assert len(outs) == 3
    assert outs[0].tolist() == [[5.0, 0.0]]
    assert outs[1][0].tolist() == pytest.approx([2.0, 0.0])
    assert torch.equal(tiny(torch.tensor([[0.5, 0.2]], dtype=torch.float64)), outs[2])


def test_compute_cap_answers_from_the_most_confident_exit(tiny: EarlyExitNetwork) -> None:
    # [0.05, 0.1]: IC 0 is 0.62 sure, IC 1 0.73: capped at exit 1, answered by exit 1.
    # [0.1, 0.05]: IC 0 is 0.73 sure, IC 1 0.62: capped at exit 1, answered by exit 0.
    X = np.array([[1.0, 0.0], [0.05, 0.1], [0.1, 0.05], [0.0, -1.0]])
    out = tiny.infer(X, threshold=0.9, max_exit=1)
    assert list(out.exit_index) == [0, 1, 1, 1]
    assert list(out.capped) == [False, True, True, False]
    assert list(out.answer_exit) == [0, 1, 0, 1]
    assert list(out.predictions) == [0, 0, 0, 1]
    assert out.probabilities[1, 0] == pytest.approx(1 / (1 + np.exp(-1.0)))
    assert out.compute_fraction.max() <= 2 / 3 + 1e-12
    capped_at_first = tiny.infer(X, threshold=0.9, max_exit=0)
    assert (capped_at_first.exit_index == 0).all()
    assert capped_at_first.compute_fraction == pytest.approx([1 / 3] * 4)


def test_bad_arguments_are_refused(tiny: EarlyExitNetwork) -> None:
    with pytest.raises(ValueError, match="threshold"):
        tiny.infer(np.zeros((1, 2)), threshold=1.5)
    with pytest.raises(ValueError, match="max_exit"):
        tiny.infer(np.zeros((1, 2)), threshold=0.5, max_exit=3)
    with pytest.raises(DataError, match="shape"):
        tiny.infer(np.zeros((1, 3)), threshold=0.5)
    with pytest.raises(ModelError, match="final"):
        EarlyExitNetwork([linear([[1.0]])], [None], (1,))


def test_efficacy_on_known_exit_patterns() -> None:
    costs = [1.0, 2.0, 4.0]  # fractions 0.25, 0.5, 1
    assert efficacy([0, 0, 0, 0], costs) == pytest.approx(0.75)
    assert efficacy([2, 2, 2], costs) == pytest.approx(0.0)
    assert efficacy([0, 1, 2, 2], costs) == pytest.approx(1 - (0.25 + 0.5 + 1 + 1) / 4)
    assert efficacy([0.01] * 5) == pytest.approx(0.99)
    # The paper's drawn curve: trapezoids through (0,0), (.25,1), (.5,1), (1,1).
    assert efficacy([0, 0], costs, interpolation="linear") == pytest.approx(0.875)
    assert efficacy([2, 2], costs, interpolation="linear") == pytest.approx(0.25)
    with pytest.raises(ValueError):
        efficacy([3], costs)
    with pytest.raises(ValueError):
        efficacy([1.5])


def test_calibration_picks_the_lowest_threshold_within_tolerance(
    trained: tuple[EarlyExitNetwork, object],
) -> None:
    model, split = trained
    X, y = split.X_test, split.y_test  # type: ignore[attr-defined]
    cal = calibrate_threshold(model, X, y, max_drop=0.05)
    floor = 0.95 * cal.final_accuracy
    assert cal.accuracy >= floor - 1e-12
    probs = _all_probs(model, X)
    for q in np.unique(probs[:-1].max(axis=2)):
        if q < cal.threshold:
            _, pred = _simulate(probs, float(q))
            assert (pred == y).mean() < floor
    out = model.infer(X, cal.threshold)
    assert out.accuracy(y) == pytest.approx(cal.accuracy)
    assert out.efficacy == pytest.approx(cal.efficacy)
    absolute = calibrate_threshold(model, X, y, max_drop=0.05, relative=False)
    assert absolute.accuracy >= absolute.final_accuracy - 0.05 - 1e-12
    grid = calibrate_threshold(model, X, y, grid=[0.5, 0.9, 0.99])
    assert grid.threshold in (0.5, 0.9, 0.99, 1.0)


def test_infer_agrees_with_all_exit_simulation(trained: tuple[EarlyExitNetwork, object]) -> None:
    model, split = trained
    X = split.X_test[:200]  # type: ignore[attr-defined]
    probs = _all_probs(model, X)
    for q in (0.5, 0.9):
        exits, pred = _simulate(probs, q)
        out = model.infer(X, q)
        assert (out.exit_index == exits).all()
        assert (out.predictions == pred).all()


def test_training_is_deterministic_and_trains_every_exit() -> None:
    split = load_digits_split()
    X, y = split.X_train[:300], split.y_train[:300]
    a = train_sdn(digits_sdn(4, seed=1), X, y, epochs=2, seed=3)
    b = train_sdn(digits_sdn(4, seed=1), X, y, epochs=2, seed=3)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    frozen = digits_sdn(4, seed=1)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    train_sdn(frozen, X, y, epochs=1, mode="ic_only")
    after = frozen.state_dict()
    assert torch.equal(before["blocks.0.1.weight"], after["blocks.0.1.weight"])
    assert torch.equal(before["heads.3.linear.weight"], after["heads.3.linear.weight"])
    assert not torch.equal(before["heads.0.linear.weight"], after["heads.0.linear.weight"])


def test_trained_digits_sdn_exits_early(trained: tuple[EarlyExitNetwork, object]) -> None:
    model, split = trained
    out = model.infer(split.X_test, 0.9)  # type: ignore[attr-defined]
    assert out.accuracy(split.y_test) > 0.85  # type: ignore[attr-defined]
    assert out.efficacy > 0.2
    stats = measure_latency(model, split.X_test[:20], 0.9)  # type: ignore[attr-defined]
    assert stats.n == 20 and 0 < stats.p50_ms <= stats.p99_ms


def test_save_load_round_trip(trained: tuple[EarlyExitNetwork, object]) -> None:
    model, split = trained
    data = save_sdn(model)
    loaded = load_sdn(data)
    assert loaded.config == model.config
    X = torch.as_tensor(split.X_test[:50])  # type: ignore[attr-defined]
    for a, b in zip(model.forward_all(X), loaded.forward_all(X), strict=True):
        assert torch.equal(a, b)
    assert b"pickle" not in data[:200]


def test_load_refuses_tampered_or_foreign_data(tiny: EarlyExitNetwork) -> None:
    from safetensors.torch import save

    with pytest.raises(ModelError, match="only networks built by digits_sdn"):
        save_sdn(tiny)
    with pytest.raises(ModelError):
        load_sdn(b"not a model")
    foreign = save({"w": torch.zeros(2)}, metadata={"format": "other"})
    with pytest.raises(ModelError, match="format"):
        load_sdn(foreign)
    model = digits_sdn(4)
    meta = {
        "format": "mlwarden.sdn",
        "format_version": "1",
        "config": model.config.model_dump_json(),
    }  # type: ignore[union-attr]
    wrong = {k: v.contiguous() for k, v in model.state_dict().items()}
    wrong["heads.0.linear.weight"] = torch.zeros(3, 3)
    with pytest.raises(ModelError, match=r"heads\.0\.linear\.weight"):
        load_sdn(save(wrong, metadata=meta))
    del wrong["heads.0.linear.weight"]
    with pytest.raises(ModelError, match="missing"):
        load_sdn(save(wrong, metadata=meta))


def test_any_backbone_wraps_with_from_blocks() -> None:
    blocks = [
        torch.nn.Sequential(torch.nn.Conv1d(1, 3, 3, padding=1), torch.nn.ReLU()),
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 6, 5)),
    ]
    model = EarlyExitNetwork.from_blocks(blocks, (1, 6), n_classes=4, pooling="avg")
    assert model.n_exits == 2
    assert isinstance(model.heads[0], ExitHead)
    assert model.block_costs == (6 * 3 * 3, 18 * 5)
    out = model.infer(np.zeros((3, 1, 6), dtype=np.float32), threshold=0.99)
    assert out.probabilities.shape == (3, 4)
