"""Real speech from Debian's espeak-ng, with phoneme timings, and the visemes they drive.

espeak-ng is driven through its C library (ctypes) in synchronous mode with phoneme events
switched on: every phoneme comes back with its sample position, which gives exact mouth-shape
ground truth. Utterances are cached per (line, voice), in memory and optionally on disk.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from model_core.data.performer.identity import VoiceSpec

SAMPLE_RATE = 16000
_EV_PHONEME = 7
_EV_WORD = 1
_PAUSES = ("_", "_:", "_!", "_^_", "||", "|")


class SpeechSynthError(RuntimeError):
    pass


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass
class Utterance:
    """One spoken line: 16 kHz mono float32 PCM and its phonemes as (start_s, end_s, symbol)."""

    text: str
    voice: str
    pcm: np.ndarray
    phonemes: list[tuple[float, float, str]]

    @property
    def duration(self) -> float:
        return len(self.pcm) / SAMPLE_RATE

    def voiced_span(self) -> tuple[float, float]:
        spoken = [p for p in self.phonemes if p[2] not in _PAUSES]
        if not spoken:
            return (0.0, 0.0)
        return (spoken[0][0], spoken[-1][1])

    def phrase_ends(self, min_pause: float = 0.12) -> list[float]:
        """Times where a phrase ends: before each pause of at least `min_pause`, and the end."""
        ends = []
        for i, (s, e, ph) in enumerate(self.phonemes):
            if ph in _PAUSES and e - s >= min_pause and i > 0:
                ends.append(s)
        end = self.voiced_span()[1]
        if not ends or end - ends[-1] > 0.3:
            ends.append(end)
        return ends


class EspeakSynth:
    """A process-wide espeak-ng engine (the C library keeps global state, hence the lock)."""

    _lock = threading.Lock()
    _lib: ctypes.CDLL | None = None
    _rate = 22050

    def __init__(self, cache_dir: str | Path | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._memory: dict[str, Utterance] = {}
        self._init_lib()

    @classmethod
    def _init_lib(cls) -> None:
        if cls._lib is not None:
            return
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:  # pragma: no cover - depends on the machine
            raise SpeechSynthError(
                f"espeak-ng library not found ({e}); apt-get install espeak-ng"
            ) from e
        rate = lib.espeak_Initialize(2, 0, None, 1)  # synchronous, phoneme events on
        if rate <= 0:
            raise SpeechSynthError("espeak_Initialize failed")
        cls._rate = rate
        cls._lib = lib

    def synthesize(self, text: str, voice: VoiceSpec) -> Utterance:
        key = hashlib.sha1(f"{voice.key}|{text}".encode()).hexdigest()
        if key in self._memory:
            return self._memory[key]
        utt = self._load(key, text, voice) or self._synthesize(text, voice)
        if self.cache_dir is not None:
            self._store(key, utt)
        self._memory[key] = utt
        return utt

    def _synthesize(self, text: str, voice: VoiceSpec) -> Utterance:
        chunks: list[bytes] = []
        events: list[tuple[int, str]] = []

        def on_audio(wav, n, ev):
            if wav and n > 0:
                chunks.append(ctypes.string_at(wav, n * 2))
            i = 0
            while ev[i].type != 0:
                if ev[i].type == _EV_PHONEME:
                    sym = bytes(ev[i].id.string).split(b"\0")[0].decode("ascii", "replace")
                    events.append((ev[i].sample, sym))
                i += 1
            return 0

        cb = _Callback(on_audio)
        lib = self._lib
        assert lib is not None
        with self._lock:
            lib.espeak_SetSynthCallback(cb)
            if lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise SpeechSynthError(f"espeak-ng has no voice {voice.name!r}")
            lib.espeak_SetParameter(1, voice.rate, 0)  # espeakRATE
            lib.espeak_SetParameter(3, voice.pitch, 0)  # espeakPITCH
            data = text.encode()
            lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None)
            lib.espeak_Synchronize()
        raw = np.frombuffer(b"".join(chunks), dtype=np.int16).astype(np.float32) / 32768.0
        pcm = resample_poly(raw, 320, 441).astype(np.float32) if raw.size else raw
        scale = SAMPLE_RATE / self._rate
        total = len(pcm) / SAMPLE_RATE
        phonemes = []
        for i, (sample, sym) in enumerate(events):
            start = sample * scale / SAMPLE_RATE
            end = events[i + 1][0] * scale / SAMPLE_RATE if i + 1 < len(events) else total
            phonemes.append((round(start, 4), round(max(end, start), 4), sym))
        return Utterance(text=text, voice=voice.key, pcm=np.clip(pcm, -1, 1), phonemes=phonemes)

    def _load(self, key: str, text: str, voice: VoiceSpec) -> Utterance | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / f"{key}.npz"
        if not path.exists():
            return None
        try:
            z = np.load(path, allow_pickle=False)
            ph = [(float(s), float(e), str(p)) for s, e, p in zip(z["start"], z["end"], z["sym"])]
            return Utterance(text, voice.key, z["pcm"].astype(np.float32) / 32767.0, ph)
        except Exception:  # a torn cache file is re-synthesised
            return None

    def _store(self, key: str, utt: Utterance) -> None:
        assert self.cache_dir is not None
        path = self.cache_dir / f"{key}.npz"
        if path.exists():
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            pcm=(utt.pcm * 32767).astype(np.int16),
            start=np.array([p[0] for p in utt.phonemes], np.float32),
            end=np.array([p[1] for p in utt.phonemes], np.float32),
            sym=np.array([p[2] for p in utt.phonemes], dtype="U8"),
        )
        tmp.replace(path)


# Mouth opening (jaw) and lip rounding per phoneme class, in [0, 1].
_VISEMES: dict[str, tuple[float, float]] = {}
for _syms, _shape in [
    (("p", "b", "m"), (0.0, 0.3)),
    (("f", "v"), (0.12, 0.2)),
    (("t", "d", "n", "l", "s", "z", "T", "D", "r", "R", "t#", "d#", "?"), (0.28, 0.2)),
    (("S", "Z", "tS", "dZ"), (0.3, 0.65)),
    (("k", "g", "N", "h", "x", "n-"), (0.38, 0.2)),
    (("w", "W"), (0.15, 0.95)),
    (("j",), (0.22, 0.0)),
    (("a", "A", "A:", "A@", "aI", "aU", "a#", "aI@", "aU@", "a:"), (0.95, 0.15)),
    (("e", "E", "e@", "eI", "3", "3:", "E2", "e#"), (0.62, 0.05)),
    (("i", "i:", "I", "I2", "i@", "I#", "i@3", "i#"), (0.38, 0.0)),
    (("o", "O", "O:", "oU", "OI", "O@", "o@", "0"), (0.66, 0.8)),
    (("u", "u:", "U", "U@", "u#"), (0.32, 1.0)),
    (("@", "@L", "@2", "@5", "V", "3#", "@-"), (0.5, 0.2)),
]:
    for _s in _syms:
        _VISEMES[_s] = _shape


def viseme_of(symbol: str) -> tuple[float, float]:
    """(opening, rounding) for an espeak phoneme mnemonic; pauses close the mouth."""
    sym = symbol.strip("'\",%=:")
    if symbol in _PAUSES or not sym or sym.startswith("_"):
        return (0.0, 0.2)
    if symbol in _VISEMES:
        return _VISEMES[symbol]
    if sym in _VISEMES:
        return _VISEMES[sym]
    return _VISEMES.get(sym[0], (0.4, 0.2))


def viseme_track(utt: Utterance, fps: int, frames: int, lead_s: float = 0.03) -> np.ndarray:
    """Per-frame (opening, rounding), shape (frames, 2), for an utterance starting at frame 0.

    Targets are sampled per frame, then a fast-attack / slower-release smoother stands in for
    jaw inertia; `lead_s` opens the mouth slightly before the sound, as people do.
    """
    target = np.zeros((frames, 2), np.float32)
    target[:, 1] = 0.2
    for start, end, sym in utt.phonemes:
        a = int(np.floor((start - lead_s) * fps))
        b = int(np.ceil((end - lead_s) * fps))
        a, b = max(a, 0), min(max(b, a + 1), frames)
        if a < frames:
            o, r = viseme_of(sym)
            # Short consonants only partially reach their target.
            weight = min(1.0, (end - start) / 0.08)
            target[a:b, 0] = (
                np.maximum(target[a:b, 0] * (1 - weight), o * weight) if o else target[a:b, 0] * 0.3
            )
            target[a:b, 1] = r
    out = np.empty_like(target)
    state = np.array([0.0, 0.2], np.float32)
    for i in range(frames):
        rate = np.where(target[i] > state, 0.7, 0.45)
        state = state + rate * (target[i] - state)
        out[i] = state
    return out
