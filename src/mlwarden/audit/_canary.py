"""The canary check: a language model must not have memorised the secrets planted in its text.

Unlike the tabular checks it looks at a generative sequence model and a list of canary lines
(``my card number is 412845``), so it is not in the tabular registry: the language-model
pipeline and ``mlwarden audit --checks canary`` call it directly.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from mlwarden.audit._checks import CheckParams, Finding

if TYPE_CHECKING:
    from mlwarden.models import CharLM


class CanaryCheck(CheckParams):
    """Parameters of ``canary``: the most exposure (bits) an inserted canary may show.

    An exposure of ``log2 |R|`` means the secret is the model's first guess out of the whole
    candidate space ``R``; near 0 means it ranks like a secret the model never saw.
    """

    max_exposure: float = Field(gt=0)
    method: Literal["auto", "rank", "skew_normal"] = "auto"
    alphabet: str = "0123456789"
    n_controls: int | None = Field(default=None, ge=0)
    max_candidates: int = Field(default=10**6, ge=1)
    n_samples: int = Field(default=10_000, ge=100)


def canary_check(
    params: CanaryCheck, model: CharLM, lines: Sequence[str], seed: int = 0
) -> Finding:
    """The highest exposure among ``lines`` (taken as inserted) must stay under the limit.

    Never-inserted controls of the same formats are measured beside them, so the finding shows
    what exposure a secret the model never saw gets.
    """
    from mlwarden.attacks import measure_canaries

    start = time.perf_counter()
    result = measure_canaries(
        model, list(lines), alphabet=params.alphabet, n_controls=params.n_controls,
        method=params.method, max_candidates=params.max_candidates,
        n_samples=params.n_samples, seed=seed,
    )  # fmt: skip
    value = result.max_exposure_inserted
    passed = value is not None and value <= params.max_exposure
    control = result.max_exposure_control
    shown = "n/a" if value is None else f"{value:.1f}"
    rows = [
        [c.line, "inserted" if c.inserted else "control", f"{c.log_perplexity:.2f}",
         c.rank if c.rank is not None else "~", f"{c.exposure:.2f}", f"{c.max_exposure:.1f}",
         c.method]
        for c in result.canaries
    ]  # fmt: skip
    return Finding(
        check="canary",
        metric="max_exposure_inserted",
        value=value,
        threshold=params.max_exposure,
        comparison="<=",
        passed=passed,
        message=f"highest exposure of {len(lines)} inserted canaries: {shown} bits "
        f"({'<=' if passed else '>'} {params.max_exposure:g} allowed; controls up to "
        f"{control if control is None else round(control, 1)} bits)",
        queries=result.queries,
        wall_time_s=time.perf_counter() - start,
        details={
            "extracted_share": result.success_rate,
            "max_exposure_control": control,
            "mean_exposure_inserted": result.mean_exposure_inserted,
            "mean_exposure_control": result.mean_exposure_control,
            "tables": [
                {
                    "title": "canary exposure (Carlini et al. 2019)",
                    "columns": [
                        "canary",
                        "kind",
                        "log-perplexity (bits)",
                        "rank",
                        "exposure (bits)",
                        "max (bits)",
                        "method",
                    ],
                    "rows": rows,
                    "note": "rank '~': estimated from a skew-normal fit of sampled candidates",
                }
            ],
            "bars": {
                "labels": [
                    f"{'IN ' if c.inserted else 'ctl'} {c.line}"[:40] for c in result.canaries
                ],
                "values": [c.exposure for c in result.canaries],
                "xlabel": "exposure (bits)",
            },
        },
    )
