"""Square attack: the published p schedule, the margin loss, image shapes, strength from scores."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mlwarden.attacks import square, square_p  # noqa: E402
from mlwarden.attacks._square_l2 import pseudo_gaussian  # noqa: E402
from mlwarden.attacks._square_linf import image_shape, margin  # noqa: E402
from mlwarden.errors import ParameterError  # noqa: E402
from mlwarden.models import TorchAdapter, load_digits_split, train_digits_model  # noqa: E402


def test_p_schedule_halves_at_the_papers_iterations() -> None:
    p = [square_p(0.8, it) for it in (0, 10, 11, 50, 51, 200, 201, 500, 501, 1000, 1001)]
    assert p == pytest.approx([0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.025])
    assert square_p(0.8, 2001) == pytest.approx(0.8 / 64)
    assert square_p(0.8, 4001) == pytest.approx(0.8 / 128)
    assert square_p(0.8, 6001) == pytest.approx(0.8 / 256)
    assert square_p(0.8, 8001) == square_p(0.8, 10**6) == pytest.approx(0.8 / 512)
    # Rescaled to a 1000-query budget, iteration 2 is the 10,000-query schedule's 20.
    assert square_p(0.8, 2, n_queries=1000, rescale=True) == pytest.approx(0.4)
    assert square_p(0.8, 2, n_queries=1000) == pytest.approx(0.8)


def test_margin_is_negative_exactly_where_misclassified() -> None:
    z = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0], [2.0, 2.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    assert margin(z, y).tolist() == [1.0, -5.0, 0.0]


def test_image_shapes() -> None:
    assert image_shape(torch.zeros(2, 64)) == (1, 8, 8)
    assert image_shape(torch.zeros(2, 5, 7)) == (1, 5, 7)
    assert image_shape(torch.zeros(2, 3, 4, 6)) == (3, 4, 6)
    with pytest.raises(ParameterError, match=r"images.*\(2, 10\)"):
        image_shape(torch.zeros(2, 10))


def test_square_fools_the_digits_mlp_from_scores_at_the_ball_corners() -> None:
    split = load_digits_split()
    module = train_digits_model(split.X_train, split.y_train, kind="mlp", seed=0, epochs=10)
    X, y = split.X_test[:40], split.y_test[:40]
    model = TorchAdapter(module, classes=range(10))
    result = square(model, X, y, eps=0.2, n_queries=300, seed=1)
    assert result.success_rate > 0.5
    n_attacked = round(result.clean_accuracy * len(X))
    assert result.queries == model.queries <= len(X) + n_attacked * 300
    assert result.adversarial is not None
    delta = np.abs(result.adversarial - X)
    # Every changed pixel sits at the ball's corner, or at the [0, 1] box where that is nearer.
    changed = delta > 1e-6
    at_corner = np.isclose(delta, 0.2, atol=1e-6)
    at_box = np.isclose(result.adversarial, 0.0) | np.isclose(result.adversarial, 1.0)
    assert np.all(at_corner[changed] | at_box[changed])
    with pytest.raises(ParameterError, match="n_queries"):
        square(model, X, y, eps=0.2, n_queries=0)
    # L2: every proposal is rescaled onto the eps-sphere, then clipped into the box.
    l2 = square(model, X, y, eps=1.0, norm="l2", n_queries=300, seed=1)
    assert l2.success_rate > 0.5 and max(l2.perturbation) <= 1.0 + 1e-5
    assert l2.queries <= len(X) + n_attacked * 300


def test_pseudo_gaussian_update_is_a_signed_unit_bump() -> None:
    bump = pseudo_gaussian(5).numpy()
    assert bump.shape == (5, 5) and np.isclose(np.linalg.norm(bump), 1.0)
    assert (bump[:2] > 0).all() and (bump[2:] < 0).all()  # top half up, bottom half down
    # Rings around each half's centre weigh 1, 1/4, 1/9, ...: the centre column is largest.
    assert bump[1].argmax() == 2 and bump[3].argmin() == 2


def test_l2_needs_images_at_least_3_by_3() -> None:
    with pytest.raises(ParameterError, match="3 by 3"):
        image_shape(torch.zeros(2, 4), "l2")
