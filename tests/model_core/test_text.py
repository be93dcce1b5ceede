"""Properties of the text encoder: deterministic, invariant to batching and padding, empty
text is the learned null context; the MiniLM backend matches sentence-transformers."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model_core.config import LPMConfig, TextConfig
from model_core.text import HashTokenizer, LPMTextEncoder

PHRASES = [
    "a calm host",
    "smiles warmly",
    "Waves hello!",
    "laughs, then frowns",
    "nods slowly while listening",
]
texts = st.lists(st.sampled_from(PHRASES + [""]), min_size=1, max_size=4)


@pytest.fixture(scope="module", params=["hash", "minilm"])
def encoder(request) -> LPMTextEncoder:
    torch.manual_seed(0)
    return LPMTextEncoder(TextConfig(backend=request.param, dim=64, max_tokens=16)).eval()


def test_shapes_mask_and_lengths(encoder):
    with torch.no_grad():
        out = encoder.encode(["a calm host", "", "laughs, then frowns"])
    b, length, dim = out.embeddings.shape
    assert (b, dim) == (3, 64)
    assert out.mask.shape == (3, length) and out.mask.dtype == torch.bool
    assert out.lengths.tolist() == out.mask.sum(1).tolist()
    assert out.lengths[1] == 1 and length == int(out.lengths.max())
    assert torch.equal(out.embeddings[~out.mask], torch.zeros_like(out.embeddings[~out.mask]))


@settings(max_examples=6, deadline=None)
@given(batch=texts)
def test_batching_and_padding_do_not_change_a_text(encoder, batch):
    with torch.no_grad():
        together = encoder.encode(batch)
        for i, text in enumerate(batch):
            alone = encoder.encode([text])
            n = int(alone.lengths[0])
            assert int(together.lengths[i]) == n
            assert alone.embeddings.shape[1] == n
            torch.testing.assert_close(
                together.embeddings[i, :n], alone.embeddings[0], atol=1e-5, rtol=1e-5
            )


def test_empty_text_is_the_null_context(encoder):
    with torch.no_grad():
        out = encoder.encode(["", "   ", "a calm host"])
        null = encoder.null_context(2)
    assert null.shape == (2, 1, 64)
    for row in (0, 1):
        assert out.lengths[row] == 1
        assert torch.equal(out.embeddings[row, :1], null[0])
    assert not torch.equal(out.embeddings[2, :1], null[0])


def test_null_context_is_learned(encoder):
    encoder.null_context(3).sum().backward()
    assert encoder.null.grad is not None and encoder.null.grad.abs().sum() > 0
    encoder.zero_grad()


def test_long_text_is_truncated(encoder):
    with torch.no_grad():
        out = encoder.encode(["word " * 100])
    assert out.embeddings.shape[1] == 16


def test_different_texts_differ(encoder):
    with torch.no_grad():
        a, b = encoder.encode(["smiles warmly"]), encoder.encode(["frowns angrily"])
    assert not torch.allclose(a.embeddings, b.embeddings)


def test_rejects_a_bare_string(encoder):
    with pytest.raises(TypeError):
        encoder.encode("a calm host")


def test_hash_tokens_are_stable_across_processes():
    """Token ids come from a keyed hash, not Python's per-process salted hash()."""
    code = (
        "from model_core.text import HashTokenizer; print(HashTokenizer(8192, 32)('Waves hello!'))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str(HashTokenizer(8192, 32)("Waves hello!"))


def test_hash_tokenizer_shares_ngrams_between_spellings():
    tok = HashTokenizer(8192, 32)
    (w1, g1), (w2, g2) = tok("smiling")[0], tok("smilling")[0]
    assert w1 != w2 and len(set(g1) & set(g2)) >= 4


def test_same_seed_same_encoder():
    torch.manual_seed(3)
    a = LPMTextEncoder(TextConfig())
    torch.manual_seed(3)
    b = LPMTextEncoder(TextConfig())
    with torch.no_grad():
        assert torch.equal(
            a.encode(["a calm host"]).embeddings, b.encode(["a calm host"]).embeddings
        )


def test_minilm_weights_stay_out_of_the_checkpoint():
    enc = LPMTextEncoder(TextConfig(backend="minilm", dim=32))
    assert set(enc.state_dict()) == {
        "null",
        "proj.0.weight",
        "proj.0.bias",
        "proj.1.weight",
        "proj.1.bias",
    }


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="umt5"):
        LPMTextEncoder(LPMConfig.preset("lpm-17b").text)


def test_tiny_preset_uses_the_hash_backend():
    assert LPMConfig.preset("tiny").text.backend == "hash"


@pytest.mark.slow
def test_minilm_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    from model_core.minilm import minilm_path, shared_minilm

    ref_model = SentenceTransformer(str(minilm_path()), device="cpu")
    batch = ["a calm host smiles", "Waves hello!  And laughs, loudly.", "ok"]
    ref = ref_model.encode(batch, output_value="token_embeddings", convert_to_tensor=True)
    hidden, mask = shared_minilm().token_embeddings(batch, 64)
    for i, r in enumerate(ref):
        assert int(mask[i].sum()) == r.shape[0]
        torch.testing.assert_close(hidden[i, : r.shape[0]], r.cpu(), atol=1e-4, rtol=1e-4)
