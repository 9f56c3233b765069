"""L-inf PGD on a Digits network: mlwarden's ``pgd`` against ART's, with a bare torch loop as floor.

Run by hand: ``.venv/bin/python bench/evasion_pgd.py [--model mlp|cnn] [--points 500]``
(needs ``pip install -e '.[torch]' adversarial-robustness-toolbox``). The same trained network,
the same test points, the same eps, steps, step size, one random start and the same
cross-entropy loss and [0, 1] clip box for every implementation:

* ``mlwarden`` ``pgd`` with early stop (its default) and without it,
* ART's ``ProjectedGradientDescent`` on a ``PyTorchClassifier`` (``num_random_init=1``),
* a plain hand-written torch PGD loop (no early stop, no bookkeeping): the floor.

Success rate: among the test points the network classifies correctly, the fraction whose
adversarial input it misclassifies, measured the same way (one forward pass outside the timed
region) for every implementation, and averaged over ``--repeats`` seeds of the random start
(one run per seed, after a warm-up). Wall time: the median of those runs. Queries (mlwarden
only): the mean number of rows sent to the network, clean pass included.
Targets: mlwarden's success at least ART's, in at most half ART's wall time. Last, as a
correctness check, each runs once without the random start (a deterministic walk), where the
success rates should agree exactly.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mlwarden.attacks import GradientAttackResult, pgd
from mlwarden.models._torch import TorchAdapter, load_digits_split, train_digits_model

TARGET_SPEEDUP = 2.0


def success_rate(module: torch.nn.Module, X: np.ndarray, X_adv: np.ndarray, y: np.ndarray) -> float:
    """Fraction of the correctly classified points whose adversarial input is misclassified."""
    with torch.no_grad():
        clean = module(torch.as_tensor(X)).argmax(1).numpy()
        adv = module(torch.as_tensor(X_adv, dtype=torch.float32)).argmax(1).numpy()
    correct = clean == y
    return float((adv[correct] != y[correct]).mean())


def timed(
    fn: Callable[[int], np.ndarray],
    module: torch.nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    repeats: int,
) -> tuple[float, float, float]:
    """Mean success rate, its standard error, and median wall time of ``fn(seed)``.

    Over seeds 0..repeats-1, after one warm-up run. The random start differs with the seed, so
    averaging over seeds damps the one-random-start noise; the standard error says how much
    is left.
    """
    fn(repeats)
    times, rates = [], []
    for seed in range(repeats):
        start = time.perf_counter()
        adv = fn(seed)
        times.append(time.perf_counter() - start)
        rates.append(success_rate(module, X, adv, y))
    sem = statistics.stdev(rates) / len(rates) ** 0.5 if len(rates) > 1 else float("nan")
    return statistics.fmean(rates), sem, statistics.median(times)


def torch_loop(
    module: torch.nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    eps: float,
    step: float,
    steps: int,
    generator: torch.Generator,
) -> np.ndarray:
    """Textbook L-inf PGD, one random start, every point every step: the floor."""
    x = torch.as_tensor(X)
    t = torch.as_tensor(y)
    x_adv = (x + (torch.rand(x.shape, generator=generator) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(module(x_adv), t, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + step * grad.sign()
        x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.numpy()


def _adv(result: GradientAttackResult) -> np.ndarray:
    assert result.adversarial is not None
    return result.adversarial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()

    import art
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    torch.set_num_threads(args.threads)
    split = load_digits_split()
    module = train_digits_model(split.X_train, split.y_train, kind=args.model, seed=0)
    X, y = split.X_test[: args.points], split.y_test[: args.points]
    clean_acc = float(TorchAdapter(module, range(10)).predict(X).__eq__(y).mean())
    classifier = PyTorchClassifier(
        model=module,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(64,),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    print(
        f"Digits {args.model}, {len(X)} test points, clean accuracy {clean_acc:.3f}; L-inf PGD, "
        f"{args.steps} steps, step 2.5*eps/steps, 1 random start, batch {len(X)}; "
        f"torch {torch.__version__} ({args.threads} thread), ART {art.__version__}; "
        f"{args.repeats} seeds"
    )
    print(
        f"targets: mlwarden success >= ART's, wall time <= ART's / {TARGET_SPEEDUP:g}; "
        "success = misclassified after attack / correctly classified before"
    )
    header = (
        f"{'eps':>5}  {'implementation':<33}{'success':>8}{'± s.e.':>8}{'wall s':>9}"
        f"{'ART/this':>9}{'queries':>9}"
    )
    print(header)
    print("-" * len(header))
    for eps in args.eps:
        step = 2.5 * eps / args.steps
        rows: list[tuple[str, float, float, float, str]] = []

        def run_art(
            seed: int, eps: float = eps, step: float = step, random_init: bool = True
        ) -> np.ndarray:
            np.random.seed(seed)  # ART draws its random start from numpy's global state
            attack = ProjectedGradientDescent(
                estimator=classifier,
                norm=np.inf,
                eps=eps,
                eps_step=step,
                max_iter=args.steps,
                targeted=False,
                num_random_init=1 if random_init else 0,
                batch_size=len(X),
                random_eps=False,
                verbose=False,
            )
            return np.asarray(attack.generate(x=X, y=y))

        art_success, art_sem, art_time = timed(run_art, module, X, y, args.repeats)
        rows.append(("ART ProjectedGradientDescent", art_success, art_sem, art_time, "-"))

        for early_stop in (True, False):
            queries: list[int] = []

            def run_ours(
                seed: int,
                eps: float = eps,
                step: float = step,
                early_stop: bool = early_stop,
                queries: list[int] = queries,
            ) -> np.ndarray:
                result = pgd(
                    TorchAdapter(module, range(10)), X, y, eps=eps, step_size=step,
                    steps=args.steps, restarts=1, random_init=True, early_stop=early_stop,
                    seed=seed, batch_size=len(X),
                )  # fmt: skip
                queries.append(result.queries)
                assert result.adversarial is not None
                return result.adversarial

            success, sem, wall = timed(run_ours, module, X, y, args.repeats)
            name = f"mlwarden pgd (early_stop={early_stop})"
            rows.append((name, success, sem, wall, f"{statistics.fmean(queries[1:]):.0f}"))

        def run_loop(seed: int, eps: float = eps, step: float = step) -> np.ndarray:
            generator = torch.Generator().manual_seed(seed)
            return torch_loop(module, X, y, eps, step, args.steps, generator)

        loop_success, loop_sem, loop_time = timed(run_loop, module, X, y, args.repeats)
        rows.append(("plain torch loop (floor)", loop_success, loop_sem, loop_time, "-"))

        for name, success, sem, wall, spent in rows:
            print(
                f"{eps:>5g}  {name:<33}{success:>8.3f}{sem:>8.3f}{wall:>9.4f}"
                f"{art_time / wall:>9.2f}{spent:>9}"
            )
        _, ours_success, ours_sem, ours_time, _ = rows[1]
        noise = 2 * (art_sem**2 + ours_sem**2) ** 0.5
        success_verdict = (
            "met" if ours_success >= art_success
            else f"within noise (2 s.e. = {noise:.3f})" if art_success - ours_success <= noise
            else "NOT met"
        )  # fmt: skip
        speed = art_time / ours_time
        print(
            f"{'':>5}  targets (early stop): success {ours_success:.3f} vs ART {art_success:.3f}"
            f" -> {success_verdict}; {speed:.1f}x ART's speed -> "
            f"{'met' if speed >= TARGET_SPEEDUP else 'NOT met'}"
        )
        # Without the random start every implementation walks the same deterministic path,
        # so their success rates should agree exactly (a correctness check, not a timing).
        same = {"ART": success_rate(module, X, run_art(0, random_init=False), y)}
        for stop in (True, False):
            result = pgd(
                TorchAdapter(module, range(10)), X, y, eps=eps, step_size=step,
                steps=args.steps, random_init=False, early_stop=stop, batch_size=len(X),
            )  # fmt: skip
            same[f"mlwarden early_stop={stop}"] = success_rate(module, X, _adv(result), y)
        print(f"{'':>5}  no random start: " + ", ".join(f"{k} {v:.3f}" for k, v in same.items()))


if __name__ == "__main__":
    main()
