"""DeepSloth on a Digits Shallow-Deep Network: efficacy, accuracy, compute and latency.

Run by hand: ``.venv/bin/python bench/slowdown.py`` (needs ``pip install -e '.[torch]'``;
about two minutes on one CPU thread). One run trains the victim SDN (width 16) and a
surrogate (width 8, another seed) on 1,000 Digits training images, calibrates the victim's
threshold on the other 257 (the lowest q whose early-exit accuracy is within 5%, relative, of
the final exit's), and attacks the 540 test images:

* white-box DeepSloth, L-inf (eps 0.2) and L2 (eps 1.0), 30 PGD steps;
* universal DeepSloth (one perturbation, optimised on the training images);
* transfer DeepSloth (crafted on the surrogate);
* random noise of the same norm, the baseline;
* the defence: the victim retrained with DeepSloth adversarial training, attacked again.

Each at the calibrated threshold and at q = 0.9. Figures beside the paper's (Hong et al.,
ICLR 2021): 90-100% efficacy lost to white-box attacks, 20-50% to transfer.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from mlwarden.attacks._deepsloth import (
    SlowdownResult,
    deepsloth,
    random_slowdown,
    transfer_deepsloth,
    universal_deepsloth,
)
from mlwarden.models._sdn import calibrate_threshold, digits_sdn, train_sdn
from mlwarden.models._torch import load_digits_split

PAPER = {"white-box": "90-100%", "transfer": "20-50%"}


def row(name: str, r: SlowdownResult, paper: str = "") -> None:
    lat_c, lat_a = r.latency_clean, r.latency_adversarial
    lat = (
        f"{lat_c.p50_ms:5.2f}/{lat_c.p99_ms:5.2f} -> {lat_a.p50_ms:5.2f}/{lat_a.p99_ms:5.2f}"
        if lat_c and lat_a
        else "-"
    )
    print(
        f"  {name:<22} eff {r.efficacy_clean:.3f} -> {r.efficacy_adversarial:.3f} "
        f"({r.efficacy_reduction:5.1f}% lost{', paper ' + paper if paper else ''}) | "
        f"acc {r.accuracy_clean:.3f} -> {r.accuracy_adversarial:.3f} | "
        f"compute {r.mean_compute_clean:.3f} -> {r.mean_compute_adversarial:.3f} | "
        f"latency p50/p99 ms {lat} | exits {r.exits_adversarial}"
    )


def main() -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    split = load_digits_split()
    X_fit, y_fit = split.X_train[:1000], split.y_train[:1000]
    X_val, y_val = split.X_train[1000:], split.y_train[1000:]
    X, y = split.X_test, split.y_test
    victim = train_sdn(digits_sdn(16, seed=0), X_fit, y_fit, epochs=20, seed=0)
    surrogate = train_sdn(digits_sdn(8, seed=1), X_fit, y_fit, epochs=20, seed=1)
    defended = train_sdn(
        digits_sdn(16, seed=0), X_fit, y_fit, epochs=12, seed=0,
        adversarial_eps=0.2, adversarial_steps=3,
    )  # fmt: skip
    print(f"trained victim, surrogate and defended SDNs in {time.perf_counter() - started:.0f} s")
    print(f"exit compute fractions: {[round(f, 3) for f in victim.exit_fractions]}")
    calibrated = calibrate_threshold(victim, X_val, y_val, max_drop=0.05)
    print(f"calibrated: {calibrated}")
    for q, label in ((calibrated.threshold, "calibrated"), (0.9, "fixed")):
        print(f"\nthreshold q = {q:.3f} ({label})")
        linf = {"eps": 0.2, "threshold": q, "norm": "linf"}
        l2 = {"eps": 1.0, "threshold": q, "norm": "l2"}
        row("white-box linf 0.2", deepsloth(victim, X, y, steps=30, **linf), PAPER["white-box"])  # type: ignore[arg-type]
        row("white-box l2 1.0", deepsloth(victim, X, y, steps=30, **l2), PAPER["white-box"])  # type: ignore[arg-type]
        row("universal linf 0.2", universal_deepsloth(victim, X_fit, X, y, steps=200, **linf))  # type: ignore[arg-type]
        row(
            "transfer linf 0.2",
            transfer_deepsloth(victim, surrogate, X, y, steps=30, **linf),  # type: ignore[arg-type]
            PAPER["transfer"],
        )
        row("random linf 0.2", random_slowdown(victim, X, y, **linf))  # type: ignore[arg-type]
        row("random l2 1.0", random_slowdown(victim, X, y, **l2))  # type: ignore[arg-type]
    cal_def = calibrate_threshold(defended, X_val, y_val, max_drop=0.05)
    print("\ndefence: DeepSloth adversarial training (eps 0.2, 3 steps), attacked white-box")
    print(f"  defended, calibrated: {cal_def}")
    for q in (cal_def.threshold, 0.9):
        linf = {"eps": 0.2, "threshold": q, "norm": "linf"}
        row(f"defended q={q:.3f}", deepsloth(defended, X, y, steps=30, **linf))  # type: ignore[arg-type]
        row(f"undefended q={q:.3f}", deepsloth(victim, X, y, steps=30, **linf))  # type: ignore[arg-type]
    guard(victim, X, y, X_fit)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def guard(victim: Any, X: np.ndarray, y: np.ndarray, X_fit: np.ndarray) -> None:
    """The server's exit monitor on the Digits SDN at q = 0.9: false alarms over 10,000 clean
    requests (20 clients, test images drawn with replacement) and the delay, in requests,
    from a client switching to DeepSloth inputs (white-box and universal) to the alarm."""
    from mlwarden.serve._slowdown import (
        ExitMonitor,
        exit_detection_delay,
        exit_false_positive_rate,
    )

    q, rng = 0.9, np.random.default_rng(0)
    clean = victim.infer(X, q)
    monitor = ExitMonitor(n_exits=victim.n_exits).fit(clean.compute_fraction)
    streams = []
    for _ in range(20):
        pick = rng.integers(0, len(X), 500)
        streams.append((clean.exit_index[pick], clean.compute_fraction[pick]))
    fpr = exit_false_positive_rate(monitor, streams)
    print(f"\nguard: exit monitor at q = {q} (clean mean compute {clean.mean_compute:.3f})")
    print(f"  false-positive rate over 20 clients x 500 clean requests: {fpr:.3f} (target 0)")
    attacks = {
        "white-box linf 0.2": deepsloth(victim, X, y, eps=0.2, threshold=q, steps=30),
        "universal linf 0.2": universal_deepsloth(victim, X_fit, X, y, eps=0.2, threshold=q,
                                                  steps=200),
    }  # fmt: skip
    for name, result in attacks.items():
        attacked = victim.infer(result.adversarial, q)
        delays = []
        for _ in range(20):
            before, after = rng.integers(0, len(X), 50), rng.integers(0, len(X), 200)
            exits = np.r_[clean.exit_index[before], attacked.exit_index[after]]
            compute = np.r_[clean.compute_fraction[before], attacked.compute_fraction[after]]
            found = exit_detection_delay(monitor, exits, compute)
            if found is not None and found <= 50:
                raise AssertionError(f"false alarm on the clean prefix ({found} requests)")
            delays.append(None if found is None else found - 50)
        caught = [d for d in delays if d is not None]
        shown = f"median {np.median(caught):.0f}, max {max(caught)}" if caught else "never"
        print(
            f"  {name}: caught {len(caught)}/20 clients; requests after the switch: {shown} "
            "(target <= 20)"
        )


if __name__ == "__main__":
    main()
