"""How much of the mouth is in the voice? A research probe of the audio features.

Reads curated shards whose ground truth has the performer's per-frame mouth opening, and fits
a ridge regression from one frame's audio features to that frame's opening on the even
clips, scoring it (Pearson r) on the odd ones. Three feature sets:

- encoder: the checkpoint's audio encoder output (what the transformer's audio attention reads);
- log-mel: that encoder's front end, the last log-mel frame that ends with the video frame;
- bands: the 33 per-frame band energies the hearing VAE decoder reads (model_core/vae_audio.py).

It also prints the encoder output's size (mean |feature|): a trained model that mutes the voice
shows it as a shrunken output while the r stays high.

Usage: .venv/bin/python scripts/audio-mouth-probe.py SHARDS [--checkpoint PATH] [--clips 150]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from model_core.bench.quality import SHIPPED_CHECKPOINT
from model_core.data.shards import ShardDataset
from model_core.pipeline import LPMPipeline
from model_core.vae_audio import frame_audio_features


def ridge_r(x: np.ndarray, y: np.ndarray, train: np.ndarray, alpha: float = 0.1) -> float:
    x = np.concatenate([x, np.ones((len(x), 1))], 1)
    a = x[train]
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ y[train])
    return float(np.corrcoef(x[~train] @ w, y[~train])[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards")
    ap.add_argument("--checkpoint", default=SHIPPED_CHECKPOINT)
    ap.add_argument("--clips", type=int, default=150)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = LPMPipeline.load(a.checkpoint, with_base=False).model
    enc = model.audio_encoder.eval()
    sr, fps = model.cfg.audio.sample_rate, model.cfg.video.fps
    feats: dict[str, list[np.ndarray]] = {"encoder": [], "log-mel": [], "bands": []}
    mouth, clip_of = [], []
    for sample in ShardDataset(a.shards, decode_video=False, split="train"):
        gt = sample["meta"].get("gt")
        if not gt or "mouth_open" not in gt:
            continue
        t = len(gt["mouth_open"])
        pcm = np.asarray(sample["character"], np.float32)
        ctx = torch.from_numpy(np.concatenate([np.zeros(sr, np.float32), pcm]))[None]
        with torch.no_grad():
            feats["encoder"].append(enc(ctx)[0, -t:].numpy())
            mel = enc.frontend(ctx)[0]
            ends = (sr + np.ceil((np.arange(t) + 1) * sr / fps)).astype(int) // enc.hop_length - 1
            feats["log-mel"].append(mel[ends].numpy())
            feats["bands"].append(
                frame_audio_features(torch.from_numpy(pcm)[None], t, sr / fps, sr)[0].numpy()
            )
        mouth.append(np.asarray(gt["mouth_open"], np.float32))
        clip_of += [len(mouth)] * t
        if len(mouth) >= a.clips:
            break
    if not mouth:
        raise SystemExit(f"{a.shards}: no clips with ground-truth mouth opening")
    y = np.concatenate(mouth)
    train = np.array(clip_of) % 2 == 0
    print(f"{len(mouth)} clips, {len(y)} frames; mouth open in {(y > 0.05).mean():.0%} of them")
    for name, xs in feats.items():
        print(f"{name:8} ridge r on held-out clips: {ridge_r(np.concatenate(xs), y, train):.3f}")
    out = np.concatenate(feats["encoder"])
    print(
        f"encoder output: mean |feature| {np.abs(out).mean():.4f}, std over time {out.std(0).mean():.4f}"
    )


if __name__ == "__main__":
    main()
