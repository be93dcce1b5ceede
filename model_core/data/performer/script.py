"""The behaviour script: who speaks when, and what the character does about it.

`build_script` lays out a conversation between the character and an off-screen partner
(turns of real espeak-ng speech and pauses), then derives, frame by frame, every control the
renderer needs (mouth, head, gaze, blinks, expressions, gestures) and the reaction events
(nods, brow raises, smiles, gaze shifts) with delays that depend on the partner's utterance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from model_core.data.performer.corpus import Line, lines_for
from model_core.data.performer.identity import CharacterIdentity, VoiceSpec
from model_core.data.performer.speech import SAMPLE_RATE, EspeakSynth, Utterance, viseme_track

STATES = ("speaking", "listening", "silent")
_MOOD_FACES = {
    "positive": ("smile", "laugh", "smile"),
    "negative": ("frown", "sad", "anger"),
    "surprising": ("surprise", "surprise", "laugh"),
    "neutral": ("neutral", "thinking", "neutral"),
}
_LISTENER_FACES = {
    "positive": ("smile", "smile", "laugh"),
    "negative": ("sad", "frown", "neutral"),
    "surprising": ("surprise", "neutral", "smile"),
    "neutral": ("neutral", "thinking", "neutral"),
}


@dataclass
class Turn:
    speaker: str  # "character" | "partner"
    line: int
    text: str
    mood: str
    question: bool
    start: float  # seconds, start of the utterance audio
    voiced: tuple[float, float]  # absolute seconds of actual speech
    utterance: Utterance = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "speaker": self.speaker,
            "line": self.line,
            "text": self.text,
            "mood": self.mood,
            "start": round(self.start, 4),
            "voiced": [round(v, 4) for v in self.voiced],
        }


@dataclass
class Event:
    kind: str  # nod | brow_raise | smile | gaze_shift | gesture name | expression change
    start: int  # frame
    end: int
    cause: int | None = None  # index of the turn that caused it

    def to_dict(self) -> dict:
        return {"kind": self.kind, "start": self.start, "end": self.end, "cause": self.cause}


@dataclass
class Script:
    fps: int
    frames: int
    turns: list[Turn]
    events: list[Event]
    character_audio: np.ndarray  # (samples,) float32, the character's voice track
    partner_audio: np.ndarray
    controls: dict[str, np.ndarray]  # per-frame float32 controls
    state: list[str]
    expression: list[str]
    gesture: list[str]
    reaction: list[str | None]


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _smooth_noise(rng, n: int, fps: int, amp: float, periods=(7.0, 3.1, 1.7)) -> np.ndarray:
    t = np.arange(n) / fps
    out = np.zeros(n, np.float32)
    for p in periods:
        out += np.sin(2 * np.pi * t / (p * rng.uniform(0.8, 1.25)) + rng.uniform(0, 6.28)) / len(
            periods
        )
    return (amp * out).astype(np.float32)


def _bump(n: int) -> np.ndarray:
    """A smooth 0 -> 1 -> 0 profile of n frames."""
    return np.sin(np.linspace(0, np.pi, max(n, 2))) ** 2


def _layout_turns(rng, synth, identity, partner_voice, seconds, lines) -> list[Turn]:
    turns: list[Turn] = []
    t = 0.5 + rng.uniform(0, 0.8)
    while t < seconds - 1.5:
        r = rng.uniform()
        if r < 0.14:
            t += rng.uniform(2.0, 4.5)  # a pause: both silent
            continue
        speaker = "character" if r < 0.57 else "partner"
        if turns and turns[-1].speaker == speaker and rng.uniform() < 0.6:
            speaker = "partner" if speaker == "character" else "character"
        voice = identity.voice if speaker == "character" else partner_voice
        for _ in range(1 if rng.uniform() < 0.7 else 2):
            line: Line = _pick(rng, lines)
            utt = synth.synthesize(line.text, voice)
            if t + utt.duration > seconds - 0.2:
                break
            a, b = utt.voiced_span()
            turns.append(
                Turn(
                    speaker, line.index, line.text, line.mood, line.question, t, (t + a, t + b), utt
                )
            )
            t += utt.duration + rng.uniform(0.1, 0.3)
        t += rng.uniform(0.35, 1.4)
    return turns


def _mix_tracks(rng, turns, n_samples):
    """Each voice on its own track, with a little of the other voice bleeding in (-24 dB)
    and a faint room-noise floor, as with two lavalier microphones."""
    own = {"character": np.zeros(n_samples, np.float32), "partner": np.zeros(n_samples, np.float32)}
    for turn in turns:
        a = int(round(turn.start * SAMPLE_RATE))
        pcm = turn.utterance.pcm
        peak = float(np.abs(pcm).max()) or 1.0
        seg = pcm[: max(0, n_samples - a)] * (0.7 / peak)
        own[turn.speaker][a : a + len(seg)] += seg
    noise = lambda: rng.normal(0, 0.002, n_samples).astype(np.float32)  # noqa: E731
    char = own["character"] + 0.06 * own["partner"] + noise()
    partner = own["partner"] + 0.06 * own["character"] + noise()
    return np.clip(char, -1, 1), np.clip(partner, -1, 1)


def build_script(
    identity: CharacterIdentity,
    partner_voice: VoiceSpec,
    seconds: float,
    seed: int,
    synth: EspeakSynth,
    fps: int = 24,
    speech_split: str = "train",
) -> Script:
    rng = np.random.default_rng([seed, identity.index, 0x5C])
    n = int(round(seconds * fps))
    turns = _layout_turns(rng, synth, identity, partner_voice, seconds, lines_for(speech_split))
    char_audio, partner_audio = _mix_tracks(rng, turns, int(round(seconds * SAMPLE_RATE)))
    t = np.arange(n) / fps
    c = {
        k: np.zeros(n, np.float32)
        for k in (
            "mouth_open",
            "mouth_round",
            "yaw",
            "pitch",
            "roll",
            "sway_x",
            "breath",
            "blink",
            "gaze_x",
            "gaze_y",
            "brow_raise",
            "smile_extra",
            "intensity",
            "gesture_amount",
            "gesture_phase",
            "beat",
        )
    }
    c["mouth_round"][:] = 0.2
    state = ["silent"] * n
    expression = ["neutral"] * n
    gesture = ["none"] * n
    reaction: list[str | None] = [None] * n
    events: list[Event] = []
    envelope = np.zeros(n, np.float32)

    def frames_of(a_s: float, b_s: float) -> tuple[int, int]:
        return max(0, int(round(a_s * fps))), min(n, int(round(b_s * fps)))

    # Speech: dialogue state, mouth shapes (visemes) and the speech envelope.
    for turn in turns:
        a, b = frames_of(*turn.voiced)
        for i in range(a, b):
            if turn.speaker == "character" or state[i] != "speaking":
                state[i] = "speaking" if turn.speaker == "character" else "listening"
        if turn.speaker != "character":
            continue
        s0 = int(round(turn.start * fps))
        m = min(n - s0, int(np.ceil(turn.utterance.duration * fps)) + 2)
        if m <= 0:
            continue
        vt = viseme_track(turn.utterance, fps, m)
        c["mouth_open"][s0 : s0 + m] = np.maximum(c["mouth_open"][s0 : s0 + m], vt[:, 0])
        c["mouth_round"][s0 : s0 + m] = vt[:, 1]
        hop = SAMPLE_RATE // fps
        pcm = np.zeros(m * hop, np.float32)
        pcm[: min(len(turn.utterance.pcm), m * hop)] = turn.utterance.pcm[: m * hop]
        rms = np.sqrt(np.mean(pcm.reshape(m, hop) ** 2, axis=1) + 1e-9)
        envelope[s0 : s0 + m] = np.maximum(envelope[s0 : s0 + m], rms / (rms.max() + 1e-6))
    speaking = np.array([s == "speaking" for s in state])

    # Idle life everywhere: sway, breathing, blinks; livelier head while speaking.
    c["yaw"] += _smooth_noise(rng, n, fps, 4.0)
    c["pitch"] += _smooth_noise(rng, n, fps, 2.0)
    c["roll"] += _smooth_noise(rng, n, fps, 2.5)
    c["sway_x"] += _smooth_noise(rng, n, fps, 0.06)
    c["breath"] += 0.06 * np.sin(2 * np.pi * t / rng.uniform(3.5, 4.5)).astype(np.float32)
    smooth_env = np.convolve(envelope, np.ones(5) / 5, mode="same").astype(np.float32)
    c["pitch"] += 4.0 * smooth_env * np.sin(2 * np.pi * 1.7 * t).astype(np.float32)
    c["yaw"] += 5.0 * smooth_env * np.sin(2 * np.pi * 0.6 * t + 1).astype(np.float32)
    i = int(rng.integers(0, 2 * fps))
    while i < n:
        d = min(int(rng.integers(3, 5)), n - i)
        c["blink"][i : i + d] = np.maximum(c["blink"][i : i + d], _bump(d + 2)[1 : d + 1])
        i += d + int(rng.uniform(1.5, 3.5 if speaking[min(i, n - 1)] else 5.5) * fps)
    partner_side = 1.0 if rng.uniform() < 0.5 else -1.0
    c["gaze_x"] += _smooth_noise(rng, n, fps, 0.25, (2.3, 5.1))

    # Expressions: the character's own lines carry their mood; as listener it mirrors the
    # partner's mood; pauses drift to neutral or thinking.
    base_expr: list[tuple[int, int, str]] = []
    for turn in turns:
        table = _MOOD_FACES if turn.speaker == "character" else _LISTENER_FACES
        a, b = frames_of(turn.start, turn.voiced[1] + 0.6)
        if rng.uniform() < 0.8:
            base_expr.append((a, b, _pick(rng, table[turn.mood])))
    for k in range(len(turns) - 1):
        gap_a, gap_b = frames_of(turns[k].voiced[1] + 0.6, turns[k + 1].start)
        if gap_b - gap_a > 2 * fps and rng.uniform() < 0.5:
            base_expr.append((gap_a, gap_b, "thinking"))
    for a, b, name in base_expr:
        ramp = np.clip(
            np.minimum(np.arange(b - a) + 1, np.arange(b - a)[::-1] + 1) / (0.3 * fps), 0, 1
        )
        intensity = rng.uniform(0.6, 1.0)
        for j, i in enumerate(range(a, b)):
            expression[i] = name
            c["intensity"][i] = intensity * ramp[j]
        events.append(Event(f"expression:{name}", a, b))

    # Gestures on the character's own turns; hand to chin in long pauses.
    for k, turn in enumerate(turns):
        if turn.speaker != "character" or rng.uniform() < 0.35:
            continue
        text = turn.text.lower()
        if k < 2 and text.startswith(("hello", "hi")):
            name = "wave"
        elif turn.question or "not sure" in text:
            name = "shrug"
        elif any(w in text for w in ("there", "show", "over", "first")):
            name = "point"
        else:
            name = "beat" if rng.uniform() < 0.7 else _pick(rng, ("wave", "point", "shrug"))
        a = int(round((turn.voiced[0] + 0.15) * fps))
        dur = (
            (turn.voiced[1] - turn.voiced[0])
            if name == "beat"
            else min(2.5, turn.voiced[1] - turn.voiced[0])
        )
        _place_gesture(c, gesture, events, name, a, int(dur * fps), n, smooth_env, fps, k)
    for k in range(len(turns) - 1):
        gap_a, gap_b = frames_of(turns[k].voiced[1] + 0.4, turns[k + 1].start - 0.2)
        if gap_b - gap_a > int(2.5 * fps) and rng.uniform() < 0.5:
            _place_gesture(
                c, gesture, events, "hand_to_chin", gap_a, gap_b - gap_a, n, smooth_env, fps, None
            )

    # Listening reactions, timed from the partner's utterance (its phrase ends, its question
    # mark, its mood), never from the instantaneous loudness.
    for k, turn in enumerate(turns):
        if turn.speaker != "partner":
            continue
        a = int(round((turn.voiced[0] + rng.uniform(0.25, 0.5)) * fps))
        g = np.zeros(n, np.float32)
        b = min(n, int(round(turn.voiced[1] * fps)) + fps // 2)
        g[a:b] = 1.0
        c["gaze_x"] += (
            0.5 * partner_side * np.convolve(g, np.ones(5) / 5, mode="same").astype(np.float32)
        )
        _add_event(events, reaction, "gaze_shift", a, min(n, a + fps // 3), k, n)
        phrase_ends = turn.utterance.phrase_ends()
        prev = 0.0
        for j, pe in enumerate(phrase_ends):
            words = len(turn.text.split()) * (pe - prev) / max(turn.utterance.duration, 0.1)
            prev = pe
            last = j == len(phrase_ends) - 1
            if rng.uniform() > (0.85 if last else 0.45) or (last and turn.question):
                continue
            delay = 0.2 + min(0.05 * words, 0.45) + rng.uniform(0, 0.1)
            s0 = int(round((turn.start + pe + delay) * fps))
            dur = int(rng.uniform(0.4, 0.6) * fps)
            if s0 + dur < n:
                c["pitch"][s0 : s0 + dur] += (
                    11.0 * np.sin(np.linspace(0, 2 * np.pi, dur)).clip(0) * _bump(dur) ** 0.3
                )
                _add_event(events, reaction, "nod", s0, s0 + dur, k, n)
        if turn.question or turn.mood == "surprising":
            anchor = phrase_ends[-1] if turn.question else 0.45 * turn.utterance.duration
            s0 = int(round((turn.start + anchor + rng.uniform(0.12, 0.3)) * fps))
            dur = int(rng.uniform(0.5, 0.8) * fps)
            if s0 + dur < n:
                c["brow_raise"][s0 : s0 + dur] += 0.8 * _bump(dur)
                _add_event(events, reaction, "brow_raise", s0, s0 + dur, k, n)
        if turn.mood == "positive":
            s0 = int(round((turn.start + 0.35 * turn.utterance.duration) * fps))
            e0 = min(n, int(round((turn.voiced[1] + 0.6) * fps)))
            if e0 - s0 > 4:
                c["smile_extra"][s0:e0] += 0.4 * _bump(e0 - s0) ** 0.5
                _add_event(events, reaction, "smile", s0, e0, k, n)

    return Script(
        fps, n, turns, events, char_audio, partner_audio, c, state, expression, gesture, reaction
    )


def _place_gesture(c, gesture, events, name, a, dur, n, env, fps, cause):
    b = min(n, a + max(dur, fps))
    if b - a < fps // 2:
        return
    amount = np.clip(
        np.minimum(np.arange(b - a) + 1, np.arange(b - a)[::-1] + 1) / (0.3 * fps), 0, 1
    )
    c["gesture_amount"][a:b] = amount
    c["gesture_phase"][a:b] = np.arange(b - a) / fps
    c["beat"][a:b] = env[a:b]
    for i in range(a, b):
        gesture[i] = name
    events.append(Event(f"gesture:{name}", a, b, cause))


_REACTION_PRIORITY = {"nod": 3, "brow_raise": 2, "smile": 1, "gaze_shift": 0}


def _add_event(events, reaction, kind, a, b, cause, n):
    events.append(Event(kind, a, b, cause))
    for i in range(a, min(b, n)):
        cur = reaction[i]
        if cur is None or _REACTION_PRIORITY[kind] > _REACTION_PRIORITY[cur]:
            reaction[i] = kind
