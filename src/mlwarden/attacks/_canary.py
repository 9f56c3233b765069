"""Canary exposure: how much a language model memorised secrets planted in its training text.

The Secret Sharer [1]_ measures unintended memorisation with *canaries*: lines such as
``my card number is 412845`` made from a format and a random secret from a candidate space
``R`` (here ``alphabet ** length``), inserted a number of times into the training text. After
training, every candidate is scored by its log-perplexity under the model, and the true
secret's rank among them (1 = most likely) gives its exposure::

    exposure = log2 |R| - log2 rank

between 0 (the secret is no more likely than a random candidate) and ``log2 |R|`` (it is the
model's first guess, so a search over the space extracts it). Canaries of the same format whose
secrets were never inserted (*controls*) show the baseline; their exposure is about 1 bit on
average (the expected rank of a random candidate is ``|R| / 2``).

Two estimators:

* :func:`exposure_by_rank` enumerates the whole space, exactly (§4.1), over the tree of
  candidates so that a space of 10^6 is scored in about a second;
* :func:`exposure_by_skew_normal` samples candidates, fits a skew-normal distribution to their
  log-perplexities and reads the secret's rank off its CDF (§4.3, the paper's approximation for
  spaces too large to enumerate).

:func:`canary_exposure` scores inserted and control secrets together; :func:`measure_canaries`
does the same from canary lines as written in a file. :func:`random_canaries` and
:func:`insert_canaries` plant canaries in a text before training.

References
----------
.. [1] N. Carlini, C. Liu, Ú. Erlingsson, J. Kos, D. Song, "The Secret Sharer: Evaluating and
   Testing Unintended Memorization in Neural Networks", USENIX Security Symposium, 2019.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy import stats

from mlwarden.attacks._result import AttackResult
from mlwarden.errors import DataError, ParameterError

if TYPE_CHECKING:
    from mlwarden.models import CharLM

__all__ = [
    "LINE_CONTEXT",
    "SECRET_SLOT",
    "Canary",
    "CanaryExposure",
    "CanaryExposureResult",
    "CandidateSpace",
    "canary_exposure",
    "exposure_by_rank",
    "exposure_by_skew_normal",
    "insert_canaries",
    "measure_canaries",
    "random_canaries",
]

#: Where the secret goes in a canary's format string.
SECRET_SLOT = "{secret}"

#: Context a canary is scored in: canaries are inserted as whole lines, so each follows a newline.
LINE_CONTEXT = "\n"

Method = Literal["auto", "rank", "skew_normal"]


class CandidateSpace(BaseModel):
    """The secrets a canary can hold: every string of ``length`` characters of ``alphabet``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alphabet: str = "0123456789"
    length: int = Field(default=6, ge=1, le=64)

    @field_validator("alphabet")
    @classmethod
    def _distinct(cls, alphabet: str) -> str:
        if len(alphabet) < 2 or len(set(alphabet)) != len(alphabet):
            raise ParameterError(
                f"alphabet needs at least two distinct characters, got {alphabet!r}"
            )
        if "\n" in alphabet:
            raise ParameterError("alphabet cannot hold a newline: canaries are single lines")
        return alphabet

    @property
    def size(self) -> int:
        """``|R| = len(alphabet) ** length``."""
        return int(len(self.alphabet) ** self.length)

    @property
    def log2_size(self) -> float:
        """``log2 |R|``: the largest possible exposure."""
        return self.length * math.log2(len(self.alphabet))

    def check(self, secret: str) -> str:
        """``secret`` itself if it belongs to the space; DataError saying why otherwise."""
        if len(secret) != self.length:
            raise DataError(f"secret {secret!r} has {len(secret)} characters; need {self.length}")
        for pos, ch in enumerate(secret):
            if ch not in self.alphabet:
                raise DataError(
                    f"secret {secret!r} has {ch!r} at position {pos}, outside {self.alphabet!r}"
                )
        return secret

    def index(self, secret: str) -> int:
        """Position of ``secret`` in the lexicographic order of the space (alphabet order)."""
        base = len(self.alphabet)
        value = 0
        for ch in self.check(secret):
            value = value * base + self.alphabet.index(ch)
        return value

    def sample(self, n: int, rng: np.random.Generator) -> list[str]:
        """``n`` candidates drawn uniformly, with replacement."""
        chars = np.array(list(self.alphabet))
        draws = chars[rng.integers(0, len(self.alphabet), size=(n, self.length))]
        return ["".join(row) for row in draws.tolist()]


class Canary(BaseModel):
    """A canary format with one ``{secret}`` slot, and the space its secrets come from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str
    space: CandidateSpace = CandidateSpace()

    @field_validator("format")
    @classmethod
    def _one_slot(cls, fmt: str) -> str:
        if fmt.count(SECRET_SLOT) != 1:
            raise ParameterError(f"format must hold {SECRET_SLOT} exactly once, got {fmt!r}")
        if "\n" in fmt:
            raise ParameterError("format cannot hold a newline: canaries are single lines")
        return fmt

    @property
    def prefix(self) -> str:
        """The text before the secret."""
        return self.format.split(SECRET_SLOT)[0]

    @property
    def suffix(self) -> str:
        """The text after the secret."""
        return self.format.split(SECRET_SLOT)[1]

    def line(self, secret: str) -> str:
        """The canary line holding ``secret``."""
        return self.prefix + self.space.check(secret) + self.suffix


class CanaryExposure(BaseModel):
    """One secret's exposure.

    ``log_perplexity`` is in bits, of the secret and the rest of its line given the line
    start and the format's prefix. ``rank`` is exact (1 = the model's most likely candidate;
    ties counted in the secret's favour) for ``method == "rank"`` and None for the skew-normal
    estimate. ``n_scored`` is the number of sequences the model scored for this exposure
    (shared with the other secrets of the same canary format). ``inserted`` is None when
    unknown.
    """

    line: str
    secret: str
    inserted: bool | None = None
    log_perplexity: float
    rank: int | None
    exposure: float
    max_exposure: float
    method: Literal["rank", "skew_normal"]
    n_scored: int


class CanaryExposureResult(AttackResult):
    """Exposures of inserted canaries and of never-inserted controls of the same formats.

    ``success_rate`` is the share of inserted canaries that are extractable by a search of the
    space: exposure above ``log2 |R| - 1``, i.e. rank 1 (estimated rank below 2 for the
    skew-normal estimate). ``queries`` is the number of sequences the model scored.
    ``max_exposure_*`` are None when there is no canary of that kind.
    """

    canaries: list[CanaryExposure]
    max_exposure_inserted: float | None
    max_exposure_control: float | None
    mean_exposure_inserted: float | None
    mean_exposure_control: float | None


# --------------------------------------------------------------------------------------------
# Planting canaries


def random_canaries(canary: Canary, n: int, *, seed: int, exclude: Sequence[str] = ()) -> list[str]:
    """``n`` distinct secrets for ``canary``, drawn uniformly with a seeded generator.

    Secrets in ``exclude`` are never drawn (for controls that must differ from inserted ones).
    """
    space = canary.space
    banned = {space.check(s) for s in exclude}
    if n < 0 or n > space.size - len(banned):
        raise ParameterError(f"cannot draw {n} distinct secrets from {space.size - len(banned)}")
    rng = np.random.default_rng(seed)
    drawn: list[str] = []
    seen = set(banned)
    while len(drawn) < n:
        for secret in space.sample(n - len(drawn), rng):
            if secret not in seen:
                seen.add(secret)
                drawn.append(secret)
    return drawn


def insert_canaries(
    text: str, canaries: Sequence[str], repeats: int | Sequence[int], *, seed: int
) -> str:
    """``text`` with each canary line inserted ``repeats`` times at random line boundaries.

    Positions are drawn uniformly (with a seeded generator) among the ``n_lines + 1`` line
    boundaries of ``text``, independently for every copy; a copy never splits a line. With a
    sequence, ``repeats[i]`` copies of ``canaries[i]`` are inserted.
    """
    counts = [repeats] * len(canaries) if isinstance(repeats, int) else list(repeats)
    if len(counts) != len(canaries):
        raise ParameterError(f"{len(canaries)} canaries but {len(counts)} repeat counts")
    if any(c < 0 for c in counts):
        raise ParameterError(f"repeats must be non-negative, got {counts}")
    for line in canaries:
        if "\n" in line:
            raise DataError(f"a canary must be a single line, got {line!r}")
    lines = text.split("\n")
    trailing_newline = text.endswith("\n")
    if trailing_newline:
        lines.pop()
    copies = [line for line, c in zip(canaries, counts, strict=True) for _ in range(c)]
    rng = np.random.default_rng(seed)
    where = rng.integers(0, len(lines) + 1, size=len(copies))
    order = rng.permutation(len(copies))  # interleave copies landing on the same boundary
    inserts: dict[int, list[str]] = {}
    for k in order.tolist():
        inserts.setdefault(int(where[k]), []).append(copies[k])
    out: list[str] = []
    for i in range(len(lines) + 1):
        out.extend(inserts.get(i, ()))
        if i < len(lines):
            out.append(lines[i])
    return "\n".join(out) + ("\n" if trailing_newline else "")


# --------------------------------------------------------------------------------------------
# Exposure


def _context(canary: Canary) -> str:
    return LINE_CONTEXT + canary.prefix


def exposure_by_rank(
    model: CharLM, canary: Canary, secret: str, *, max_candidates: int = 10**6
) -> CanaryExposure:
    """Exact exposure from the secret's rank among every candidate of the space (§4.1 of [1]_).

    Scores all ``|R|`` candidates (over the tree of candidates, see
    :meth:`~mlwarden.models.CharLM.enumerate_log_perplexity`) and counts those strictly more
    likely than the secret: ``rank = 1 + #{r : logperp(r) < logperp(secret)}``, ``exposure =
    log2 |R| - log2 rank``.

    Raises
    ------
    ValueError
        The space is larger than ``max_candidates``: use :func:`exposure_by_skew_normal`.

    References
    ----------
    .. [1] Carlini et al., "The Secret Sharer", USENIX Security 2019.
    """
    return _rank_exposures(model, canary, [secret], max_candidates=max_candidates)[0]


def _rank_exposures(
    model: CharLM, canary: Canary, secrets: Sequence[str], *, max_candidates: int
) -> list[CanaryExposure]:
    space = canary.space
    if space.size > max_candidates:
        raise ParameterError(
            f"the space has {space.size:,} candidates, more than max_candidates="
            f"{max_candidates:,}; use the skew-normal estimate"
        )
    indices = [space.index(s) for s in secrets]
    scores = model.enumerate_log_perplexity(
        space.alphabet, space.length, prefix=_context(canary), suffix=canary.suffix
    )
    ordered = np.sort(scores)
    out = []
    for secret, index in zip(secrets, indices, strict=True):
        value = float(scores[index])
        rank = int(np.searchsorted(ordered, value, side="left")) + 1
        out.append(
            CanaryExposure(
                line=canary.line(secret),
                secret=secret,
                log_perplexity=value,
                rank=rank,
                exposure=space.log2_size - math.log2(rank),
                max_exposure=space.log2_size,
                method="rank",
                n_scored=space.size,
            )
        )
    return out


def exposure_by_skew_normal(
    model: CharLM, canary: Canary, secret: str, *, n_samples: int = 10_000, seed: int = 0
) -> CanaryExposure:
    """Exposure estimated from a skew-normal fit to sampled candidates (§4.3 of [1]_).

    Draws ``n_samples`` candidates uniformly from the space, fits a skew-normal distribution
    (``scipy.stats.skewnorm``, maximum likelihood) to their log-perplexities, and estimates
    ``exposure = -log2 CDF(logperp(secret))``, the log-fraction of the space more likely than
    the secret, through the log-CDF so that far tails stay finite. The estimate is capped at
    ``log2 |R|`` (an estimated rank below 1 means rank 1).

    References
    ----------
    .. [1] Carlini et al., "The Secret Sharer", USENIX Security 2019.
    """
    return _skew_normal_exposures(model, canary, [secret], n_samples=n_samples, seed=seed)[0]


def _skew_normal_exposures(
    model: CharLM, canary: Canary, secrets: Sequence[str], *, n_samples: int, seed: int
) -> list[CanaryExposure]:
    if n_samples < 10:
        raise ParameterError(
            f"n_samples must be at least 10 to fit a distribution, got {n_samples}"
        )
    space = canary.space
    for s in secrets:
        space.check(s)
    context = _context(canary)
    sample = space.sample(n_samples, np.random.default_rng(seed))
    sampled = model.log_perplexity([s + canary.suffix for s in sample], prefix=context)
    values = model.log_perplexity([s + canary.suffix for s in secrets], prefix=context)
    # Fit on standardised values (the optimiser is better conditioned), then map back.
    mean, std = float(sampled.mean()), float(sampled.std())
    std = std if std > 0 else 1.0
    shape, loc, scale = stats.skewnorm.fit((sampled - mean) / std)
    log_cdf = stats.skewnorm.logcdf((values - mean) / std, shape, loc, scale)
    exposures = np.minimum(-np.asarray(log_cdf, dtype=float) / math.log(2.0), space.log2_size)
    return [
        CanaryExposure(
            line=canary.line(secret),
            secret=secret,
            log_perplexity=float(value),
            rank=None,
            exposure=float(max(exposure, 0.0)),
            max_exposure=space.log2_size,
            method="skew_normal",
            n_scored=n_samples + len(secrets),
        )
        for secret, value, exposure in zip(secrets, values, exposures, strict=True)
    ]


def canary_exposure(
    model: CharLM,
    canaries: Canary | Sequence[Canary],
    secrets: Sequence[str],
    *,
    inserted: Sequence[bool],
    method: Method = "auto",
    max_candidates: int = 10**6,
    n_samples: int = 10_000,
    seed: int = 0,
) -> CanaryExposureResult:
    """Exposure of every secret, inserted or control, with the maxima of each group.

    ``canaries[i]`` (or the one canary for all) is the format of ``secrets[i]``. Secrets of the
    same format share one enumeration (``"rank"``) or one fitted distribution
    (``"skew_normal"``); ``"auto"`` enumerates spaces of at most ``max_candidates`` and
    samples ``n_samples`` candidates (seeded by ``seed``) beyond.

    Parameters
    ----------
    model
        The trained character language model.
    canaries
        One format for all secrets, or one per secret.
    secrets
        The secrets, each in its canary's candidate space.
    inserted
        Whether each secret was inserted in the training text (False: a control).
    method, max_candidates, n_samples, seed
        Estimator choice and settings, as above.

    Returns
    -------
    CanaryExposureResult
        Per-secret exposures in input order; see the class for ``success_rate``.
    """
    started = time.perf_counter()
    formats = [canaries] * len(secrets) if isinstance(canaries, Canary) else list(canaries)
    flags = list(inserted)
    if not len(formats) == len(secrets) == len(flags):
        raise ParameterError(
            f"{len(secrets)} secrets, {len(formats)} canaries and {len(flags)} inserted flags"
        )
    if method not in ("auto", "rank", "skew_normal"):
        raise ParameterError(f"method must be 'auto', 'rank' or 'skew_normal', got {method!r}")
    groups: dict[Canary, list[int]] = {}
    for i, canary in enumerate(formats):
        groups.setdefault(canary, []).append(i)
    results: list[CanaryExposure | None] = [None] * len(secrets)
    queries = 0
    for canary, rows in groups.items():
        group_secrets = [secrets[i] for i in rows]
        exact = method == "rank" or (method == "auto" and canary.space.size <= max_candidates)
        if exact:
            found = _rank_exposures(model, canary, group_secrets, max_candidates=max_candidates)
            queries += canary.space.size
        else:
            found = _skew_normal_exposures(
                model, canary, group_secrets, n_samples=n_samples, seed=seed
            )
            queries += n_samples + len(group_secrets)
        for i, item in zip(rows, found, strict=True):
            results[i] = item.model_copy(update={"inserted": flags[i]})
    items = [r for r in results if r is not None]
    planted = [r.exposure for r in items if r.inserted]
    control = [r.exposure for r in items if not r.inserted]
    extracted = [r for r in items if r.inserted and r.exposure > r.max_exposure - 1.0]
    return CanaryExposureResult(
        attack="canary_exposure",
        n_points=len(items),
        success_rate=len(extracted) / len(planted) if planted else 0.0,
        queries=queries,
        budget=None,
        wall_time_s=time.perf_counter() - started,
        params={
            "method": method,
            "max_candidates": max_candidates,
            "n_samples": n_samples,
            "seed": seed,
        },
        examples=[r.model_dump() for r in items if r.inserted][:5],
        canaries=items,
        max_exposure_inserted=max(planted) if planted else None,
        max_exposure_control=max(control) if control else None,
        mean_exposure_inserted=float(np.mean(planted)) if planted else None,
        mean_exposure_control=float(np.mean(control)) if control else None,
    )


def _parse_line(line: str, space: CandidateSpace | None, alphabet: str) -> tuple[Canary, str]:
    """A canary line split into its format and secret: the trailing run of alphabet characters
    (or the last ``space.length`` characters when the space is given)."""
    text = line.rstrip("\r\n")
    if space is not None:
        secret = text[len(text) - space.length :] if len(text) >= space.length else text
        space.check(secret)
    else:
        end = len(text)
        start = end
        while start > 0 and text[start - 1] in alphabet:
            start -= 1
        if start == end:
            raise DataError(f"canary line {text!r} does not end with a secret over {alphabet!r}")
        secret = text[start:end]
        space = CandidateSpace(alphabet=alphabet, length=len(secret))
    body = text[: len(text) - len(secret)]
    if SECRET_SLOT in body:
        raise DataError(f"canary line {text!r} holds the text {SECRET_SLOT}")
    return Canary(format=body + SECRET_SLOT, space=space), secret


def measure_canaries(
    model: CharLM,
    lines: Sequence[str],
    *,
    space: CandidateSpace | None = None,
    alphabet: str = "0123456789",
    n_controls: int | None = None,
    control_seed: int = 1_000_003,
    method: Method = "auto",
    max_candidates: int = 10**6,
    n_samples: int = 10_000,
    seed: int = 0,
) -> CanaryExposureResult:
    """Exposure of canary lines as written (``my card number is 412845``), with controls.

    Each line is taken as inserted; its secret is its last ``space.length`` characters, or,
    without a space, its trailing run of ``alphabet`` characters (the space's length is that
    run's). ``n_controls`` control canaries (default: as many as lines) reuse the lines'
    formats in turn with fresh secrets drawn with ``control_seed``, never equal to a listed
    secret, so the result shows the exposure of secrets the model never saw beside the
    inserted ones. The remaining arguments are those of :func:`canary_exposure`.

    Raises
    ------
    DataError
        A line does not end with a secret of the space, or there are no lines.
    """
    if not lines:
        raise DataError("no canary lines given")
    parsed = [_parse_line(line, space, alphabet) for line in lines]
    n_extra = len(parsed) if n_controls is None else n_controls
    if n_extra < 0:
        raise ParameterError(f"n_controls must be non-negative, got {n_extra}")
    formats = list(dict.fromkeys(canary for canary, _ in parsed))
    controls: list[tuple[Canary, str]] = []
    for k, canary in enumerate(formats):
        count = n_extra // len(formats) + (1 if k < n_extra % len(formats) else 0)
        used = [s for c, s in parsed if c == canary]
        drawn = random_canaries(canary, count, seed=control_seed + k, exclude=used)
        controls.extend((canary, s) for s in drawn)
    everything = parsed + controls
    return canary_exposure(
        model,
        [c for c, _ in everything],
        [s for _, s in everything],
        inserted=[True] * len(parsed) + [False] * len(controls),
        method=method,
        max_candidates=max_candidates,
        n_samples=n_samples,
        seed=seed,
    )
