"""A small character-level language model (embedding + GRU) that scores text in bits.

The model the canary-exposure attack (:mod:`mlwarden.attacks._canary`) measures: trained on a
text, it gives every string a log-perplexity, ``-sum log2 P(c_i | c_<i)``, the quantity of the
Secret Sharer [1]_. Scoring is batched on tensors: a shared context is run once and its hidden
state reused by every candidate, and :meth:`CharLM.enumerate_log_perplexity` walks the whole
tree of ``alphabet ** length`` candidates level by level, so that a hidden state is computed
once per distinct prefix rather than once per candidate.

Every training window starts with a start-of-text token (index ``len(vocab)``, not a
character), so the model is defined on a string with no context at all; scoring conditions on
that token followed by ``prefix``.

Weights are saved with ``safetensors`` (plain tensors, nothing executable) and the
:class:`CharLMConfig` as JSON in the file's metadata; loading checks every tensor's name,
shape and dtype against the config. Nothing is unpickled.

torch and safetensors are the optional ``torch`` extra (``pip install 'mlwarden[torch]'``);
nothing here imports them until a model is built, trained or loaded.

References
----------
.. [1] N. Carlini, C. Liu, Ú. Erlingsson, J. Kos, D. Song, "The Secret Sharer: Evaluating and
   Testing Unintended Memorization in Neural Networks", USENIX Security Symposium, 2019.
.. [2] K. Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder for
   Statistical Machine Translation", EMNLP 2014 (the GRU).
"""

from __future__ import annotations

import logging
import math
import string
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlwarden.errors import DataError, ParameterError
from mlwarden.models._safetensors import load_weights, read_config, save_module
from mlwarden.models._torch import require_torch

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "DEFAULT_VOCAB",
    "CharLM",
    "CharLMConfig",
    "load_char_lm",
    "save_char_lm",
    "train_char_lm",
]

logger = logging.getLogger(__name__)

#: Printable ASCII and the newline: the characters of the bundled docstring corpus.
DEFAULT_VOCAB = "\n" + "".join(ch for ch in string.printable if ch.isprintable())

#: Saved-model format name and version, written in the safetensors metadata.
FORMAT = "mlwarden.charlm"
FORMAT_VERSION = 1

_LN2 = math.log(2.0)


class CharLMConfig(BaseModel):
    """Architecture of a :class:`CharLM` and how it was trained.

    ``vocab`` lists the distinct characters the model knows, in the order of its output
    columns; ``seq_len`` is the training window length and ``seed`` the seed it was trained
    with. ``steps``, ``batch_size`` and ``lr`` record the training run (0 / defaults for an
    untrained model).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    vocab: str = DEFAULT_VOCAB
    embed: int = Field(default=32, ge=1, le=4096)
    hidden: int = Field(default=128, ge=1, le=8192)
    layers: int = Field(default=1, ge=1, le=8)
    seq_len: int = Field(default=96, ge=1)
    seed: int = 0
    steps: int = Field(default=0, ge=0)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=3e-3, gt=0)

    @field_validator("vocab")
    @classmethod
    def _distinct(cls, vocab: str) -> str:
        if len(vocab) < 2:
            raise ParameterError("vocab needs at least two characters")
        if len(set(vocab)) != len(vocab):
            dup = sorted({ch for ch in vocab if vocab.count(ch) > 1})
            raise ParameterError(f"vocab characters must be distinct; repeated: {dup!r}")
        return vocab


def _build_module(config: CharLMConfig) -> torch.nn.Module:
    from torch import nn

    class _Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(len(config.vocab) + 1, config.embed)  # + start token
            self.rnn = nn.GRU(config.embed, config.hidden, config.layers, batch_first=True)
            self.out = nn.Linear(config.hidden, len(config.vocab))

    return _Net()


class CharLM:
    """A trained character language model: log-perplexities of strings, in bits.

    Build one with :func:`train_char_lm` or :func:`load_char_lm`. The network stays on CPU in
    eval mode; scoring runs without gradients.
    """

    def __init__(self, config: CharLMConfig, module: torch.nn.Module) -> None:
        self.config = config
        self.module = module.eval()
        self._index = {ch: i for i, ch in enumerate(config.vocab)}
        self.start = len(config.vocab)

    @property
    def vocab(self) -> str:
        """The characters the model knows, in the order of its output columns."""
        return self.config.vocab

    def encode(self, text: str, *, what: str = "text") -> list[int]:
        """Character indices of ``text``; DataError names the first unknown character."""
        index = self._index
        try:
            return [index[ch] for ch in text]
        except KeyError:
            pos = next(i for i, ch in enumerate(text) if ch not in index)
            raise DataError(
                f"{what} has character {text[pos]!r} (U+{ord(text[pos]):04X}) at position "
                f"{pos}, which is not in the model's vocabulary"
            ) from None

    # ----------------------------------------------------------------------------------------
    # Tensor-level steps

    def _step(
        self, tokens: torch.Tensor, h: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run ``tokens`` (n, t) from states ``h`` (layers, n, hidden); per-step log2 probs."""
        import torch

        net: Any = self.module
        out, h_new = net.rnn(net.embed(tokens), h)
        logp = torch.log_softmax(net.out(out), dim=-1) / _LN2
        return logp, h_new

    def _context(self, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        """State after the start token and ``prefix``, and the log2 next-char distribution."""
        import torch

        tokens = torch.tensor([[self.start, *self.encode(prefix, what="prefix")]])
        logp, h = self._step(tokens, None)
        return logp[0, -1], h

    def _continue(self, logp0: torch.Tensor, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Sum of -log2 P of ``tokens`` (n, t) from states ``h`` whose next-char log2 distribution
        is ``logp0`` (n, V) or (V,): one float64 value per row."""

        first = logp0.expand(len(tokens), -1).gather(1, tokens[:, :1])[:, 0].double()
        if tokens.shape[1] == 1:
            return -first
        logp, _ = self._step(tokens[:, :-1], h)
        rest = logp.gather(2, tokens[:, 1:, None])[..., 0].double().sum(dim=1)
        return -(first + rest)

    # ----------------------------------------------------------------------------------------
    # Scoring

    def log_perplexity(
        self, sequences: Sequence[str], prefix: str = "", *, batch_size: int = 4096
    ) -> np.ndarray:
        """Per sequence, ``-sum log2 P(c_i | start, prefix, c_<i)`` over its own characters.

        The Secret Sharer's log-perplexity [1]_ of each sequence, conditioned on ``prefix``
        (which is run once and shared; its own characters are not counted). Sequences are
        grouped by length and scored ``batch_size`` at a time; an empty one scores 0.

        Raises
        ------
        DataError
            A sequence or the prefix holds a character outside the vocabulary.

        References
        ----------
        .. [1] Carlini et al., "The Secret Sharer", USENIX Security 2019, §3 (Definition 1).
        """
        import numpy as np
        import torch

        if batch_size < 1:
            raise ParameterError(f"batch_size must be at least 1, got {batch_size}")
        encoded = [self.encode(s, what=f"sequence {i}") for i, s in enumerate(sequences)]
        result = np.zeros(len(encoded), dtype=np.float64)
        by_length: dict[int, list[int]] = {}
        for i, codes in enumerate(encoded):
            if codes:
                by_length.setdefault(len(codes), []).append(i)
        if not by_length:
            return result
        with torch.no_grad():
            logp0, h0 = self._context(prefix)
            for rows in by_length.values():
                tokens = torch.tensor([encoded[i] for i in rows], dtype=torch.long)
                parts = []
                for chunk in torch.split(tokens, batch_size):
                    h = h0.expand(-1, len(chunk), -1).contiguous()
                    parts.append(self._continue(logp0, h, chunk))
                result[np.asarray(rows)] = torch.cat(parts).numpy()
        return result

    def enumerate_log_perplexity(
        self,
        alphabet: str,
        length: int,
        prefix: str = "",
        suffix: str = "",
        *,
        batch_size: int = 65536,
    ) -> np.ndarray:
        """Log-perplexity of every ``secret + suffix`` with ``secret`` in ``alphabet ** length``.

        Exact and equal to :meth:`log_perplexity` of the same strings, but computed over the
        tree of candidates: one hidden state per distinct prefix of the secret, so the cost is
        about ``|alphabet| ** (length - 1)`` GRU steps instead of ``length * |alphabet| **
        length``. Entry ``k`` belongs to the secret whose digits in base ``|alphabet|`` are the
        alphabet positions of its characters (lexicographic order of the alphabet).
        """
        import numpy as np
        import torch

        if length < 1:
            raise ParameterError(f"length must be at least 1, got {length}")
        if len(set(alphabet)) != len(alphabet) or not alphabet:
            raise DataError(f"alphabet must be non-empty with distinct characters: {alphabet!r}")
        alpha = torch.tensor(self.encode(alphabet, what="alphabet"), dtype=torch.long)
        tail = torch.tensor(self.encode(suffix, what="suffix"), dtype=torch.long)
        size = len(alphabet)

        def expand(logp: torch.Tensor, h: torch.Tensor, acc: torch.Tensor, depth: int) -> None:
            # logp (n, V): next-char log2 distribution at each of the n states h (layers, n, H)
            child = (acc[:, None] - logp[:, alpha].double()).reshape(-1)
            if depth + 1 == length and len(tail) == 0:
                out.append(child)
                return
            n_children = len(child)
            step = max(1, batch_size // size) * size
            for start in range(0, n_children, step):
                stop = min(start + step, n_children)
                parents = torch.arange(start, stop) // size
                tokens = alpha[torch.arange(start, stop) % size, None]
                h_child = h[:, parents].contiguous()
                logp_c, h_c = self._step(tokens, h_child)
                if depth + 1 == length:
                    cost = child[start:stop]
                    suffix_tokens = tail.expand(stop - start, -1)
                    out.append(cost + self._continue(logp_c[:, -1], h_c, suffix_tokens))
                else:
                    expand(logp_c[:, -1], h_c, child[start:stop], depth + 1)

        out: list[torch.Tensor] = []
        with torch.no_grad():
            logp0, h0 = self._context(prefix)
            expand(logp0[None], h0, torch.zeros(1, dtype=torch.float64), 0)
        return np.asarray(torch.cat(out).numpy())


# --------------------------------------------------------------------------------------------
# Training


def train_char_lm(
    text: str,
    *,
    config: CharLMConfig | None = None,
    steps: int = 2000,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> CharLM:
    """Train a :class:`CharLM` on ``text`` with Adam, deterministically given the seed.

    Each step draws ``batch_size`` windows of ``config.seq_len`` characters at uniformly random
    offsets, puts the start token before each, and minimises the cross-entropy of predicting
    every character of the window from those before it (gradients clipped to norm 1; the
    learning rate decays along a cosine to a tenth of ``lr``). The global torch random state
    and deterministic-algorithms flag are restored afterwards.

    Parameters
    ----------
    text
        The training text; every character must be in ``config.vocab``.
    config
        Architecture; None: :class:`CharLMConfig` defaults (printable ASCII, GRU 128).
    steps, batch_size, lr
        Optimiser steps, windows per step and Adam's initial learning rate.
    seed
        Seeds the weights and the windows; None: ``config.seed``.
    progress
        Called after every step with the number of steps done and that step's loss in bits
        per character (for a progress bar); the loss is also logged at DEBUG every 100 steps.

    Returns
    -------
    CharLM
        The trained model; its config records the seed, steps, batch size and lr.

    Raises
    ------
    DataError
        ``text`` has a character outside the vocabulary, or is not longer than ``seq_len``.
    """
    require_torch()
    import torch
    import torch.nn.functional as F

    if steps < 0 or batch_size < 1 or lr <= 0:
        raise ParameterError(
            f"need steps >= 0, batch_size >= 1, lr > 0; got {steps}, {batch_size}, {lr}"
        )
    base = config if config is not None else CharLMConfig()
    config = base.model_copy(
        update={
            "seed": base.seed if seed is None else seed,
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
        }
    )
    config = CharLMConfig.model_validate(config.model_dump())
    probe = CharLM(config, _build_module(config))
    data = torch.tensor(probe.encode(text, what="training text"), dtype=torch.long)
    window = config.seq_len
    if len(data) <= window:
        raise DataError(f"training text has {len(data)} characters; need more than {window}")

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            module = _build_module(config)
            model = CharLM(config, module)
            generator = torch.Generator().manual_seed(config.seed)
            optimiser = torch.optim.Adam(module.parameters(), lr=lr)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimiser, T_max=max(steps, 1), eta_min=lr / 10
            )
            start = torch.full((batch_size, 1), model.start, dtype=torch.long)
            offsets = torch.arange(window)
            module.train()
            for step in range(steps):
                begin = torch.randint(
                    0, len(data) - window + 1, (batch_size, 1), generator=generator
                )
                target = data[begin + offsets]
                tokens = torch.cat([start, target[:, :-1]], dim=1)
                logp, _ = model._step(tokens, None)
                loss = F.nll_loss(logp.reshape(-1, logp.shape[-1]) * _LN2, target.reshape(-1))
                optimiser.zero_grad()
                torch.autograd.backward(loss)
                torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
                optimiser.step()
                schedule.step()
                bits = loss.item() / _LN2
                if progress is not None:
                    progress(step + 1, bits)
                if (step + 1) % 100 == 0:
                    logger.debug("char LM step %d/%d: %.3f bits/char", step + 1, steps, bits)
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
    module.eval()
    logger.info("trained char LM (%d steps) in %.1f s", steps, time.perf_counter() - started)
    return model


# --------------------------------------------------------------------------------------------
# Persistence


def save_char_lm(model: CharLM) -> bytes:
    """The model as safetensors bytes: weights as tensors, the config as JSON metadata.

    Nothing executable is written; read it back with :func:`load_char_lm`.
    """
    require_torch()
    return save_module(model.module, model.config, FORMAT, FORMAT_VERSION)


def load_char_lm(data: bytes) -> CharLM:
    """A :class:`CharLM` from :func:`save_char_lm` bytes, checked before it is used.

    Raises
    ------
    ModelError
        The bytes are not a safetensors file of this format and version, the config does not
        validate, or a tensor is missing, unexpected, or of the wrong shape or dtype for the
        config.
    """
    require_torch()
    config = read_config(data, FORMAT, FORMAT_VERSION, CharLMConfig, "char LM")
    module = _build_module(config)
    load_weights(data, module, "char LM")
    return CharLM(config, module)
