"""Stage 3, dialogue state recognition and segmentation.

Each frame of a kept shot is labelled speaking / listening / silent from both voice tracks:
silero-vad finds speech on each track, and the louder track at that moment says whose speech
it is (each microphone also hears the other voice, about 24 dB down). The visual check is lip
sync: the frame-to-frame change of dark-red "open mouth" pixels in the head area of the crop
is correlated with each track's loudness; a shot whose mouth follows the partner's track
better than the character's has mismatched audio and is dropped. Clips are then cut at state
changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from model_core.data.curation.source import SAMPLE_RATE, RawRecording

STATES = ("speaking", "listening", "silent")


@dataclass
class DialogueConfig:
    vad_threshold: float = 0.5
    min_speech_ms: int = 200
    min_silence_ms: int = 400
    speech_pad_ms: int = 40
    dominance: float = 2.0  # rms ratio that says whose voice it is
    min_run: int = 6  # state runs shorter than this are absorbed by their neighbour
    min_clip: int = 24
    max_clip: int = 120
    # Audio mismatch: sync with the partner's track beats sync with the character's by this
    # much. Tuned on calibration seeds 100, 101 and 6 (about 20 minutes of recordings).
    mismatch_sync_margin: float = 0.2
    min_evidence: int = 12


_VAD = None


def _vad_model():
    global _VAD
    if _VAD is None:
        threads = torch.get_num_threads()
        from silero_vad import load_silero_vad  # it sets torch threads to 1 on import

        _VAD = load_silero_vad()
        torch.set_num_threads(threads)
    return _VAD


def speech_frames(pcm: np.ndarray, n_frames: int, fps: float, cfg: DialogueConfig) -> np.ndarray:
    """Boolean per video frame: silero-vad finds speech on this track."""
    # Read the thread count before importing silero_vad: its first import sets torch to one
    # thread, and restoring the count read after it would leave the whole process on one
    # thread (float results of everything run later, the bench's included, depend on it).
    threads = torch.get_num_threads()
    from silero_vad import get_speech_timestamps

    torch.set_num_threads(threads)
    out = np.zeros(n_frames, bool)
    if not np.any(np.abs(pcm) > 1e-4):
        return out
    with torch.no_grad():
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(pcm, dtype=np.float32)),
            _vad_model(),
            threshold=cfg.vad_threshold,
            sampling_rate=SAMPLE_RATE,
            min_speech_duration_ms=cfg.min_speech_ms,
            min_silence_duration_ms=cfg.min_silence_ms,
            speech_pad_ms=cfg.speech_pad_ms,
        )
    torch.set_num_threads(threads)
    for st in stamps:
        a = int(np.floor(st["start"] / SAMPLE_RATE * fps))
        b = int(np.ceil(st["end"] / SAMPLE_RATE * fps))
        out[max(a, 0) : min(b, n_frames)] = True
    return out


def frame_rms(pcm: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    hop = SAMPLE_RATE / fps
    idx = (np.arange(n_frames + 1) * hop).round().astype(int)
    c = np.concatenate([[0.0], np.cumsum(pcm.astype(np.float64) ** 2)])
    idx = np.minimum(idx, len(pcm))
    e = (c[idx[1:]] - c[idx[:-1]]) / np.maximum(idx[1:] - idx[:-1], 1)
    return np.sqrt(e + 1e-12).astype(np.float32)


def mouth_signal(frames: np.ndarray, crop: list[int]) -> np.ndarray:
    """Open-mouth pixel count per frame in the head area (upper 65%) of the crop."""
    x0, y0, x1, y1 = crop
    region = frames[:, y0 : y0 + int(0.65 * (y1 - y0)), x0:x1].astype(np.int16)
    r, g, b = region[..., 0], region[..., 1], region[..., 2]
    lum = (r * 3 + g * 6 + b) // 10
    # The open mouth is dark and deeply red: red well above green and blue (skin and lips
    # are far less saturated; dark reddish hair is still, so it does not vary).
    mask = (r * 2 > g * 5) & (r > b * 2) & (lum < 110)
    return mask.sum(axis=(1, 2)).astype(np.float32)


def mouth_activity(signal: np.ndarray, window: int = 9) -> np.ndarray:
    if len(signal) < 2:
        return np.zeros_like(signal)
    pad = window // 2
    p = np.pad(signal, pad, mode="edge")
    w = np.lib.stride_tricks.sliding_window_view(p, window)
    # Relative to the pixel count, so a large open-but-still mouth (a laugh) with coding noise
    # does not read as talking, while a mouth opening and closing does.
    return (w.std(axis=1) / (w.mean(axis=1) + 10.0)).astype(np.float32)


def smooth_runs(labels: np.ndarray, min_run: int) -> np.ndarray:
    """Absorb runs shorter than `min_run` into the preceding run (or the next, at the start)."""
    out = labels.copy()
    n = len(out)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and out[j + 1] == out[i]:
            j += 1
        if j - i + 1 < min_run and n > min_run:
            fill = out[i - 1] if i > 0 else (out[j + 1] if j + 1 < n else out[i])
            out[i : j + 1] = fill
        i = j + 1
    return out


def runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    out, i, n = [], 0, len(labels)
    while i < n:
        j = i
        while j + 1 < n and labels[j + 1] == labels[i]:
            j += 1
        out.append((i, j + 1, int(labels[i])))
        i = j + 1
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or a.std() < 1e-6 or b.std() < 1e-6:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def sync_scores(signal: np.ndarray, rms_c: np.ndarray, rms_p: np.ndarray) -> tuple[float, float]:
    """How well mouth movement follows each track's loudness (a SyncNet-style check): the
    correlation of the frame-to-frame change of open-mouth pixels with log loudness."""
    change = np.abs(np.diff(signal))
    return (_corr(change, np.log(rms_c[1:] + 1e-3)), _corr(change, np.log(rms_p[1:] + 1e-3)))


def recognize_dialogue(
    rec: RawRecording, quality_manifest: dict, cfg: DialogueConfig | None = None
) -> dict:
    """Stage 3 on one recording -> per-frame labels of kept shots, clips, mismatch drops."""
    cfg = cfg or DialogueConfig()
    t0 = time.perf_counter()
    n, fps = rec.num_frames, rec.fps
    vad_c = speech_frames(rec.character, n, fps, cfg)
    vad_p = speech_frames(rec.partner, n, fps, cfg)
    rms_c, rms_p = frame_rms(rec.character, n, fps), frame_rms(rec.partner, n, fps)
    char_dom = rms_c > cfg.dominance * rms_p
    partner_dom = rms_p > cfg.dominance * rms_c
    label = np.full(n, 2, np.int8)  # silent
    label[vad_p & partner_dom] = 1
    label[vad_c & char_dom] = 0
    shots, dropped, clips = [], [], []
    for shot in quality_manifest["kept"]:
        s, e = shot["start"], shot["end"]
        signal = mouth_signal(rec.frames[s:e], shot["crop"])
        act = mouth_activity(signal)
        lab = label[s:e]
        spk, lst = lab == 0, lab == 1
        a_spk = float(act[spk].mean()) if spk.sum() >= cfg.min_evidence else None
        a_lst = float(act[lst].mean()) if lst.sum() >= cfg.min_evidence else None
        sync_c, sync_p = sync_scores(signal, rms_c[s:e], rms_p[s:e])
        # The mouth follows the partner's track better than the character's: wrong audio.
        mismatch = sync_p - sync_c > cfg.mismatch_sync_margin
        entry = {
            "id": shot["id"],
            "start": s,
            "end": e,
            "crop": shot["crop"],
            "sync_character": round(sync_c, 3),
            "sync_partner": round(sync_p, 3),
            "mouth_active_speaking": None if a_spk is None else round(a_spk, 3),
            "mouth_active_listening": None if a_lst is None else round(a_lst, 3),
        }
        if mismatch:
            dropped.append({**entry, "reason": "audio_mismatch"})
            continue
        smooth = smooth_runs(lab, cfg.min_run)
        label[s:e] = smooth
        entry["labels"] = "".join("SLQ"[v] for v in smooth)  # S speaking, L listening, Q quiet
        shots.append(entry)
        for a, b, v in runs(smooth):
            if b - a < cfg.min_clip:
                dropped.append(
                    {"id": shot["id"], "start": s + a, "end": s + b, "reason": "short_segment"}
                )
                continue
            parts = int(np.ceil((b - a) / cfg.max_clip))
            bounds = np.linspace(a, b, parts + 1).round().astype(int)
            for k in range(parts):
                clips.append(
                    {
                        "shot": shot["id"],
                        "start": s + int(bounds[k]),
                        "end": s + int(bounds[k + 1]),
                        "state": STATES[v],
                        "crop": shot["crop"],
                    }
                )
    return {
        "stage": "dialogue",
        "recording": rec.name,
        "frames_in": quality_manifest["frames_kept"],
        "frames_kept": sum(c["end"] - c["start"] for c in clips),
        "shots": shots,
        "clips": clips,
        "dropped": dropped,
        "seconds": round(time.perf_counter() - t0, 4),
    }
