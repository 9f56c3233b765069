"""AutoAttack on Digits networks: mlwarden's ``autoattack`` against ART's ``AutoAttack``.

Run by hand: ``.venv/bin/python bench/evasion_autoattack.py [--points 100] [--threads 1]``
(needs ``pip install -e '.[torch]' adversarial-robustness-toolbox``). For each Digits network
(MLP and CNN, trained normally and with L-inf PGD adversarial training as in
``bench/evasion_pgd.py``) and each norm (L-inf and L2), both implementations attack the same
network on the same test points with the same eps and [0, 1] clip box:

* ``mlwarden`` ``autoattack``: the standard ensemble of Croce & Hein (ICML 2020): APGD-CE,
  APGD-T (DLR, 9 targets), and Square with 5000 queries; 100 APGD steps.
* ART's ``AutoAttack`` with its default members (APGD-CE and APGD-DLR with 5 restarts each,
  DeepFool, Square with 5 restarts; ``eps_step = 2 * eps``, the paper's initial step) and one
  batch of all the points. ART's default is not the published ensemble: it has more restarts
  and no targeted APGD.

Robust accuracy: the fraction of all the points whose returned input the network classifies
correctly and that lies in the eps-ball, measured the same way for both. Wall time: one run
each. Targets: mlwarden's robust accuracy at most ART's, in at most half ART's time.
"""

from __future__ import annotations

import argparse
import sys
import time
import types

import numpy as np
import torch

from mlwarden.attacks import autoattack
from mlwarden.models import TorchAdapter, load_digits_split, train_digits_model

TARGET_SPEEDUP = 2.0
EPS = {"linf": 0.1, "l2": 0.5}


def robust_accuracy(
    module: torch.nn.Module, X: np.ndarray, X_adv: np.ndarray, y: np.ndarray, eps: float, norm: str
) -> float:
    """Fraction of the points classified correctly at an input inside the eps-ball."""
    with torch.no_grad():
        adv = module(torch.as_tensor(X_adv, dtype=torch.float32)).argmax(1).numpy()
    delta = (X_adv - X).reshape(len(X), -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    inside = size <= eps * (1 + 1e-5) + 1e-6
    return float(np.mean((adv == y) | ~inside))


def run_art(
    module: torch.nn.Module, X: np.ndarray, y: np.ndarray, eps: float, norm: str
) -> np.ndarray:
    """ART's AutoAttack with its default members, one batch."""
    try:
        import multiprocess  # noqa: F401  # ART 1.20 imports it even without a pool
    except ImportError:  # the run is serial (parallel_pool_size=0): it is never used
        sys.modules["multiprocess"] = types.ModuleType("multiprocess")
    from art.attacks.evasion import AutoAttack
    from art.estimators.classification import PyTorchClassifier

    # ART's Square takes images only: the same network behind a flatten, on 1x8x8 inputs.
    images = torch.nn.Sequential(torch.nn.Flatten(), module)
    classifier = PyTorchClassifier(
        model=images, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 8, 8), nb_classes=10,
        clip_values=(0.0, 1.0), device_type="cpu",
    )  # fmt: skip
    np.random.seed(0)
    attack = AutoAttack(
        estimator=classifier, norm=np.inf if norm == "linf" else 2, eps=eps, eps_step=2 * eps,
        batch_size=len(X),
    )  # fmt: skip
    return np.asarray(attack.generate(x=X.reshape(-1, 1, 8, 8), y=y)).reshape(len(X), -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    parser.add_argument("--norms", nargs="+", default=["linf", "l2"])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()

    import art

    torch.set_num_threads(args.threads)
    split = load_digits_split()
    X, y = split.X_test[: args.points], split.y_test[: args.points]
    print(
        f"Digits, {len(X)} test points; eps linf {EPS['linf']}, l2 {EPS['l2']}; torch "
        f"{torch.__version__} ({args.threads} thread), ART {art.__version__}"
    )
    print(f"targets: mlwarden robust accuracy <= ART's, wall time <= ART's / {TARGET_SPEEDUP:g}")
    header = (
        f"{'model':<14}{'norm':<6}{'clean':>7}{'mlwarden':>10}{'ART':>7}{'mlw s':>8}{'ART s':>8}"
        f"{'ART/mlw':>9}{'queries':>10}  fooled by (mlwarden)   verdict"
    )
    print(header)
    print("-" * len(header))
    for kind in args.models:
        for trained in ("plain", "pgd"):
            adv_eps = 0.1 if trained == "pgd" else None
            module = train_digits_model(
                split.X_train, split.y_train, kind=kind, seed=0, adversarial_eps=adv_eps
            )
            module.eval()
            for norm in args.norms:
                eps = EPS[norm]
                model = TorchAdapter(module, range(10))
                start = time.perf_counter()
                ours = autoattack(model, X, y, eps=eps, norm=norm, batch_size=len(X))  # type: ignore[arg-type]
                ours_s = time.perf_counter() - start
                assert ours.adversarial is not None
                ours_acc = robust_accuracy(module, X, ours.adversarial, y, eps, norm)
                start = time.perf_counter()
                art_adv = run_art(module, X, y, eps, norm)
                art_s = time.perf_counter() - start
                art_acc = robust_accuracy(module, X, art_adv, y, eps, norm)
                speed = art_s / ours_s
                met = ours_acc <= art_acc and speed >= TARGET_SPEEDUP
                print(
                    f"{kind + '/' + trained:<14}{norm:<6}{ours.clean_accuracy:>7.3f}"
                    f"{ours_acc:>10.3f}{art_acc:>7.3f}{ours_s:>8.2f}{art_s:>8.2f}{speed:>9.1f}"
                    f"{ours.queries:>10}  {ours.params['fooled_by']}   "
                    f"{'met' if met else 'NOT met'}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
