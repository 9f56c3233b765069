"""Canary exposure (the Secret Sharer) of a char LM: repeats vs exposure, exact vs skew-normal.

Run by hand: ``.venv/bin/python bench/canary.py [--steps 1500] [--chars 200000] [--hidden 128]``.
One GRU character model is trained on a slice of the bundled docstring corpus into which two
canary formats are planted, each with four secrets inserted 1, 5, 20 and 50 times:

* ``my pin is {secret}``, 6 digits (|R| = 10^6): exact exposure from the rank among all 10^6
  candidates, beside the skew-normal estimate from 10,000 sampled candidates, to check their
  agreement;
* ``my card number is {secret}``, 9 digits (|R| = 10^9, too many to enumerate): the
  skew-normal estimate only.

Four never-inserted control secrets per format show the baseline (about 1 bit). Prints the
training time, each canary's exposure and the agreement of the two estimators; the whole run
takes two to four minutes on one core.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mlwarden.attacks._canary import (
    Canary,
    CanaryExposureResult,
    CandidateSpace,
    canary_exposure,
    insert_canaries,
    random_canaries,
)
from mlwarden.datasets import load_text
from mlwarden.models._charlm import CharLMConfig, train_char_lm

CORPUS = load_text("pydoc")
REPEATS = (1, 5, 20, 50)


def _show(title: str, result: CanaryExposureResult, repeats: list[int]) -> None:
    print(f"\n{title}  ({result.queries:,} sequences scored in {result.wall_time_s:.1f} s)")
    print(f"  {'secret':<10} {'repeats':>7} {'log-perp':>9} {'rank':>8} {'exposure':>9}")
    for item, count in zip(result.canaries, repeats, strict=True):
        rank = "-" if item.rank is None else f"{item.rank:,}"
        print(
            f"  {item.secret:<10} {count:>7} {item.log_perplexity:>9.2f} {rank:>8} "
            f"{item.exposure:>9.2f}"
        )
    print(
        f"  max exposure: inserted {result.max_exposure_inserted:.2f}, control "
        f"{result.max_exposure_control:.2f} (of {result.canaries[0].max_exposure:.2f} bits)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--chars", type=int, default=200_000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--n-samples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    pin = Canary(format="my pin is {secret}", space=CandidateSpace(length=6))
    card = Canary(format="my card number is {secret}", space=CandidateSpace(length=9))
    # Separate seeds per format and for the controls: one seed would give the 9-digit secrets
    # the 6-digit ones as prefixes.
    planted = {
        c: random_canaries(c, len(REPEATS), seed=args.seed + 10 * k)
        for k, c in enumerate((pin, card))
    }
    controls = {
        c: random_canaries(c, 4, seed=args.seed + 10 * k + 1, exclude=planted[c])
        for k, c in enumerate((pin, card))
    }
    text = CORPUS[: args.chars]
    lines = [c.line(s) for c in (pin, card) for s in planted[c]]
    text = insert_canaries(text, lines, list(REPEATS) * 2, seed=args.seed)
    print(
        f"{len(text):,} characters of docstrings with {sum(REPEATS) * 2} canary lines; "
        f"GRU {args.hidden}, {args.steps} steps of 32 x 64 characters, seed {args.seed}",
        flush=True,
    )

    started = time.perf_counter()
    last = [started]

    def progress(step: int, bits: float) -> None:
        if time.perf_counter() - last[0] > 15 or step == args.steps:
            last[0] = time.perf_counter()
            print(f"  step {step}/{args.steps}: {bits:.3f} bits/char", flush=True)

    config = CharLMConfig(hidden=args.hidden, seq_len=64)
    model = train_char_lm(
        text, config=config, steps=args.steps, batch_size=32, seed=args.seed, progress=progress
    )
    print(f"training: {time.perf_counter() - started:.1f} s")

    repeats = [*REPEATS, 0, 0, 0, 0]
    flags = [True] * len(REPEATS) + [False] * 4
    results = {}
    for method in ("rank", "skew_normal"):
        results[method] = canary_exposure(
            model,
            pin,
            planted[pin] + controls[pin],
            inserted=flags,
            method=method,  # type: ignore[arg-type]
            n_samples=args.n_samples,
            seed=args.seed,
        )
        _show(f"6-digit pin, {method}", results[method], repeats)
    exact = np.array([c.exposure for c in results["rank"].canaries])
    approx = np.array([c.exposure for c in results["skew_normal"].canaries])
    diff = approx - exact
    print(
        f"  skew-normal minus exact: mean {diff.mean():+.2f}, max |diff| "
        f"{np.abs(diff).max():.2f} bits (inserted {np.abs(diff[:4]).max():.2f}, "
        f"controls {np.abs(diff[4:]).max():.2f})"
    )
    big = canary_exposure(
        model,
        card,
        planted[card] + controls[card],
        inserted=flags,
        n_samples=args.n_samples,
        seed=args.seed,
    )
    _show("9-digit card number, skew_normal (10^9 candidates)", big, repeats)
    print(f"\ntotal: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
