"""Does a hearing VAE decoder move the mouth with the voice? A research probe.

For held-out speaking samples of LPM-Bench-mini, the checkpoint's Online model streams the
sample once (keeping its latents); those same latents are then decoded several ways and each
result's lip sync is scored as the bench scores it:

- online_speech / online_silence / online_shifted: the checkpoint's decoder with the sample's
  voice, with silence, and with the voice shifted by half a second;
- online_shipped_decoder: the shipped checkpoint's decoder;
- roundtrip: the ground-truth footage through the checkpoint's VAE (with the voice);
- smoothed_speech / smoothed_silence: the ground truth's latents smoothed along time over 5
  latent frames (the `vae-decoder` stage's `latent_smooth`), decoded with voice and silence.

Usage: .venv/bin/python scripts/decoder-voice-probe.py CHECKPOINT [--samples 8] [--seconds 4]
       [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from model_core.bench.judges import load_judges
from model_core.bench.metrics.lip_sync import lip_sync_score
from model_core.bench.quality import SHIPPED_CHECKPOINT
from model_core.bench.scenarios import ScenarioRenderer, scenario_specs
from model_core.bench.systems import vae_roundtrip
from model_core.pipeline import LPMPipeline
from model_core.train.objectives.vae_decoder import smooth_latents

SR = 16000


def to_uint8(video: torch.Tensor) -> np.ndarray:
    return ((video[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    pipe = LPMPipeline.load(a.checkpoint, with_base=False)
    shipped = LPMPipeline.load(SHIPPED_CHECKPOINT, with_base=False)
    vae = pipe.model.vae
    judges = load_judges(None, False)
    specs = [s for s in scenario_specs(a.samples * 3, a.seconds, 0) if s.kind == "speaking"]
    renderer = ScenarioRenderer()
    rows: dict[str, list[float | None]] = {}

    def score(key: str, frames: np.ndarray, sample) -> None:
        mouth = judges.probe.predict(frames)["mouth_open"]
        s = lip_sync_score(mouth, sample.speech_energy, sample.state == "speaking")
        rows.setdefault(key, []).append(s)

    for spec in specs[: a.samples]:
        sample = renderer.render(spec)
        refs = pipe.encode_references(sample.model_refs)
        stream = pipe.start_stream(refs, text=sample.identity.describe(), seed=spec.index)
        lats = []
        for k in range(a.seconds):
            span = slice(k * SR, (k + 1) * SR)
            lats.append(
                stream.push(sample.speak[span], sample.listen[span], keep_latents=True).latents
            )
        z = torch.cat([refs.global_latent, *lats], dim=2)
        voice = sample.speak[: a.seconds * SR].astype(np.float32)
        shifted = np.roll(voice, SR // 2)
        with torch.no_grad():
            for key, dec, pcm in [
                ("online_speech", vae, voice),
                ("online_silence", vae, None),
                ("online_shifted", vae, shifted),
                ("online_shipped_decoder", shipped.model.vae, None),
            ]:
                audio = None if pcm is None else torch.from_numpy(pcm)[None]
                score(key, to_uint8(dec.decode(z, audio=audio))[1:], sample)
            score("roundtrip", vae_roundtrip(vae, sample.frames, speak=sample.speak), sample)
            n = 1 + 4 * ((len(sample.frames) - 1) // 4)
            clip = torch.from_numpy(np.ascontiguousarray(sample.frames[:n]))
            zg = smooth_latents(vae.encode(clip.permute(3, 0, 1, 2).float()[None] / 127.5 - 1), 5)
            pcm = torch.from_numpy(sample.speak[: round(n * vae.samples_per_frame)].copy())[None]
            for key, audio in [("smoothed_speech", pcm.float()), ("smoothed_silence", None)]:
                frames = to_uint8(vae.decode(zg, audio=audio))
                pad = np.repeat(frames[-1:], len(sample.frames) - len(frames), axis=0)
                score(key, np.concatenate([frames, pad]), sample)
        print(spec.name, {k: None if v[-1] is None else round(v[-1], 3) for k, v in rows.items()})
    summary = {
        k: float(np.mean([x for x in v if x is not None]))
        if any(x is not None for x in v)
        else None
        for k, v in rows.items()
    }
    print(json.dumps({k: None if v is None else round(v, 3) for k, v in summary.items()}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {"checkpoint": a.checkpoint, "mean": summary, "per_sample": rows}, f, indent=1
            )


if __name__ == "__main__":
    main()
