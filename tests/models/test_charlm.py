"""CharLM: training determinism, log-perplexity against a naive loop, safe persistence."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from itertools import product

import numpy as np
import pytest
from pydantic import ValidationError

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from mlwarden.datasets import load_text  # noqa: E402
from mlwarden.errors import DataError, ModelError  # noqa: E402
from mlwarden.models._charlm import (  # noqa: E402
    DEFAULT_VOCAB,
    CharLM,
    CharLMConfig,
    load_char_lm,
    save_char_lm,
    train_char_lm,
)

CORPUS = load_text("pydoc")
SMALL = CharLMConfig(embed=8, hidden=24, layers=2, seq_len=32)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core box, two threads contend and run far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def text() -> str:
    return CORPUS[:8000]


@pytest.fixture(scope="module")
def model(text: str) -> CharLM:
    return train_char_lm(text, config=SMALL, steps=40, batch_size=16, seed=3)


def naive_log_perplexity(model: CharLM, sequence: str, prefix: str = "") -> float:
    """One character at a time through the raw modules: the definition, without batching."""
    net = model.module
    index = {ch: i for i, ch in enumerate(model.vocab)}
    h = None
    token = model.start
    total = 0.0
    with torch.no_grad():
        for pos, ch in enumerate(prefix + sequence):
            out, h = net.rnn(net.embed(torch.tensor([[token]])), h)
            logp = torch.log_softmax(net.out(out[0, -1]).double(), dim=-1)
            if pos >= len(prefix):
                total -= float(logp[index[ch]]) / math.log(2.0)
            token = index[ch]
    return total


def test_the_bundled_corpus_is_printable_ascii_and_sized_as_documented() -> None:
    data = CORPUS.encode("ascii")
    assert 300_000 <= len(data) <= 600_000
    assert set(data.decode("ascii")) <= set(DEFAULT_VOCAB)


def test_training_is_deterministic_given_the_seed_and_reports_progress(text: str) -> None:
    seen: list[tuple[int, float]] = []
    a = train_char_lm(
        text,
        config=SMALL,
        steps=5,
        batch_size=4,
        seed=7,
        progress=lambda s, loss: seen.append((s, loss)),
    )
    b = train_char_lm(text, config=SMALL, steps=5, batch_size=4, seed=7)
    c = train_char_lm(text, config=SMALL, steps=5, batch_size=4, seed=8)
    for name, tensor in a.module.state_dict().items():
        assert torch.equal(tensor, b.module.state_dict()[name])
    assert not all(
        torch.equal(t, c.module.state_dict()[n]) for n, t in a.module.state_dict().items()
    )
    assert [s for s, _ in seen] == [1, 2, 3, 4, 5]
    assert all(0 < loss < 10 for _, loss in seen)
    assert a.config.seed == 7 and a.config.steps == 5


def test_training_lowers_the_loss_below_a_uniform_guess(model: CharLM, text: str) -> None:
    bits_per_char = model.log_perplexity([text[:2000]])[0] / 2000
    assert bits_per_char < math.log2(len(DEFAULT_VOCAB)) - 1.5


def test_log_perplexity_matches_a_character_by_character_loop(model: CharLM) -> None:
    sequences = ["the file", "x", "", "Return a new list.\n", "the file"]
    got = model.log_perplexity(sequences, prefix="os.")
    want = [naive_log_perplexity(model, s, prefix="os.") for s in sequences]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert got[2] == 0.0
    assert got[0] == got[4]


def test_prefix_conditioning_follows_the_chain_rule(model: CharLM) -> None:
    whole, head = model.log_perplexity(["split the path", "split"])
    (tail,) = model.log_perplexity([" the path"], prefix="split")
    assert tail == pytest.approx(whole - head, abs=1e-3)


def test_small_batches_give_the_same_scores(model: CharLM) -> None:
    sequences = [f"{i:04d}" for i in range(0, 10000, 97)]
    np.testing.assert_allclose(
        model.log_perplexity(sequences, batch_size=7), model.log_perplexity(sequences), atol=1e-4
    )


def test_enumeration_scores_every_candidate_in_lexicographic_order(model: CharLM) -> None:
    alphabet, length = "a1Z", 4
    everything = ["".join(p) for p in product(alphabet, repeat=length)]
    for suffix in ("", "!\n"):
        got = model.enumerate_log_perplexity(
            alphabet, length, prefix="id=", suffix=suffix, batch_size=10
        )
        want = model.log_perplexity([s + suffix for s in everything], prefix="id=")
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_unknown_characters_raise_data_error_naming_character_and_position(model: CharLM) -> None:
    with pytest.raises(DataError, match=r"sequence 1 has character 'é' \(U\+00E9\) at position 3"):
        model.log_perplexity(["ok", "caf\u00e9"])
    with pytest.raises(DataError, match=r"prefix has character '\\t'"):
        model.log_perplexity(["ok"], prefix="a\tb")
    with pytest.raises(DataError, match="training text has character"):
        train_char_lm("abc\u2603" * 100, config=SMALL, steps=1)
    with pytest.raises(DataError, match="alphabet"):
        model.enumerate_log_perplexity("0\u00b91", 2)


def test_config_rejects_a_vocab_with_repeated_characters() -> None:
    with pytest.raises(ValidationError, match="repeated"):
        CharLMConfig(vocab="abca")


def test_save_and_load_round_trip_gives_identical_scores(model: CharLM) -> None:
    data = save_char_lm(model)
    assert b"pickle" not in data and not data.startswith(b"PK")
    loaded = load_char_lm(data)
    assert loaded.config == model.config
    sequences = ["def f(x):", "Return the path.", "0123"]
    np.testing.assert_array_equal(
        loaded.log_perplexity(sequences, prefix="\n"), model.log_perplexity(sequences, prefix="\n")
    )


def _rewrite_metadata(data: bytes, **changes: str) -> bytes:
    """The safetensors bytes with metadata entries replaced (tensors untouched)."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"].update(changes)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + size :]


def test_loading_refuses_corrupt_or_mismatched_files(model: CharLM) -> None:
    data = save_char_lm(model)
    wider = model.config.model_copy(update={"hidden": model.config.hidden + 1})
    fewer = model.config.model_copy(update={"layers": 1})
    cases = {
        "shorter than": data[:5],
        "overruns": data[:200],
        "cannot read the char LM weights": data[: len(data) - 64],
        "needs": _rewrite_metadata(data, config=wider.model_dump_json()),
        "unexpected": _rewrite_metadata(data, config=fewer.model_dump_json()),
        "invalid config": _rewrite_metadata(data, config='{"hidden": -1}'),
        "format version": _rewrite_metadata(data, format_version="99"),
        "metadata format": _rewrite_metadata(data, format="something.else"),
        "not a safetensors file": b"\x08" + b"\x00" * 7 + b"notjson!" + data,
    }
    for message, blob in cases.items():
        with pytest.raises(ModelError, match=message):
            load_char_lm(blob)


def test_loading_refuses_non_finite_weights(model: CharLM) -> None:
    from safetensors.torch import save

    tensors = {k: v.clone() for k, v in model.module.state_dict().items()}
    tensors["out.bias"][0] = float("nan")
    data = save(
        tensors,
        metadata={
            "format": "mlwarden.charlm",
            "format_version": "1",
            "config": model.config.model_dump_json(),
        },
    )
    with pytest.raises(ModelError, match="NaN"):
        load_char_lm(data)
