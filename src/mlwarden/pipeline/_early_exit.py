"""The early-exit pipeline: train a Shallow-Deep Network, fix its exit threshold, red-team it
for slowdown, gate, register.

A spec with ``task: early_exit`` runs ``train`` (the SDN on Digits, optionally adversarially
trained against the slowdown objective; the exit threshold fixed or calibrated on a held-out
slice as DeepSloth does) -> ``audit`` (the ``slowdown`` check) -> ``gate`` -> ``register``
through the same executor, cache and lineage as every other pipeline.
"""

from __future__ import annotations

from typing import Any

from mlwarden.audit import SlowdownCheck
from mlwarden.models import EARLY_EXIT_MEDIA_TYPE
from mlwarden.pipeline._context import Output, StepContext
from mlwarden.pipeline._early_exit_spec import EarlyExitSpec
from mlwarden.pipeline._io import JSON, json_bytes


def train_early_exit(ctx: StepContext) -> dict[str, Output]:
    """Train the SDN on the training split and fix its exit threshold."""
    from mlwarden.models import (
        DIGITS_INPUT_SCALE,
        calibrate_threshold,
        digits_sdn,
        efficacy,
        load_digits_split,
        save_sdn,
        train_sdn,
    )

    p = ctx.params
    split = load_digits_split(test_size=p["test_size"], seed=p["seed"])
    # A fifth of the training split is held back to calibrate the threshold.
    n_fit = int(len(split.X_train) * 0.8)
    X_fit, y_fit = split.X_train[:n_fit], split.y_train[:n_fit]
    X_val, y_val = split.X_train[n_fit:], split.y_train[n_fit:]
    t = p["train"]
    ctx.progress(f"training a width-{t['width']} SDN for {t['epochs']} epochs on {n_fit} images")
    model = train_sdn(
        digits_sdn(width=t["width"], seed=t["seed"]),
        X_fit,
        y_fit,
        epochs=t["epochs"],
        lr=t["lr"],
        seed=t["seed"],
        adversarial_eps=t["adversarial_eps"],
        adversarial_steps=t["adversarial_steps"],
    )
    exit_spec = p["exit"]
    if exit_spec["threshold"] is not None:
        threshold = float(exit_spec["threshold"])
    else:
        threshold = calibrate_threshold(
            model, X_val, y_val, max_drop=exit_spec["calibrate_max_drop"]
        ).threshold
    out = model.infer(split.X_test, threshold)
    info = {
        "threshold": threshold,
        "input_scale": DIGITS_INPUT_SCALE,  # what load_digits_split fed it: served the same
        "test_size": p["test_size"],
        "seed": p["seed"],
        "accuracy": out.accuracy(split.y_test),
        "efficacy": efficacy(out.compute_fraction),
        "mean_compute": out.mean_compute,
        "exit_fractions": [float(f) for f in model.exit_fractions],
    }
    ctx.progress(
        f"threshold {threshold:.3g}: accuracy {info['accuracy']:.4f}, "
        f"efficacy {info['efficacy']:.3f}"
    )
    return {
        "model": Output(save_sdn(model), EARLY_EXIT_MEDIA_TYPE, "sdn.safetensors"),
        "info": Output(json_bytes(info), JSON, "early_exit.json"),
    }


def audit_early_exit(ctx: StepContext) -> dict[str, Output]:
    """Run the slowdown checks on the held-out images at the serving threshold."""
    from mlwarden.audit import slowdown_check
    from mlwarden.models import load_digits_split, load_sdn

    info = ctx.json("info")
    model = load_sdn(ctx.input("model"))
    split = load_digits_split(test_size=info["test_size"], seed=info["seed"])
    findings = []
    for params in ctx.params["checks"]:
        check = SlowdownCheck.model_validate({k: v for k, v in params.items() if k != "check"})
        ctx.progress(f"DeepSloth {check.norm} eps {check.eps:g} on {check.rows} images")
        findings.append(
            slowdown_check(
                check, model, split.X_test, split.y_test, info["threshold"], seed=info["seed"]
            )
        )
    return {
        "findings": Output(
            json_bytes([f.model_dump(mode="json") for f in findings]), JSON, "findings.json"
        )
    }


def early_exit_step_params(spec: EarlyExitSpec) -> dict[str, dict[str, Any]]:
    """Each step's slice of the spec (what its cache key depends on)."""
    return {
        "train": {
            "test_size": spec.test_size,
            "seed": spec.train.seed,
            "train": spec.train.model_dump(mode="json"),
            "exit": spec.exit.model_dump(mode="json"),
        },
        "audit": {"checks": [c.model_dump(mode="json") for c in spec.checks]},
    }
