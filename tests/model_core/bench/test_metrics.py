"""Metric functions on synthetic signals (no models)."""

import numpy as np

from model_core.bench.metrics.flicker import flicker
from model_core.bench.metrics.lip_sync import lip_sync_score, pearson
from model_core.bench.metrics.listening import (
    UNSTABLE_FLICKER,
    listening_score,
    reaction_frames,
    vertical_shift,
)
from model_core.bench.metrics.mouth_motion import mouth_motion
from model_core.bench.metrics.stability import drift
from model_core.bench.metrics.win_rate import preference, win_rate


def test_lip_sync_is_correlation_and_needs_speech():
    rng = np.random.default_rng(0)
    energy = np.abs(np.sin(np.arange(48) / 3.0))
    speaking = np.ones(48, bool)
    assert lip_sync_score(energy * 2 + 0.1, energy, speaking) > 0.95
    assert abs(lip_sync_score(rng.permutation(energy), energy, speaking)) < 0.5
    assert lip_sync_score(np.full(48, 0.3), energy, speaking) == 0.0
    assert lip_sync_score(energy, energy, np.zeros(48, bool)) is None
    assert pearson(np.ones(5) + 1e-7 * np.arange(5), np.arange(5.0)) == 0.0


def test_mouth_motion_is_the_read_spread_over_the_true_one_while_speaking():
    true = 0.4 * np.abs(np.sin(np.arange(48) / 3.0))
    speaking = np.ones(48, bool)
    assert np.isclose(mouth_motion(true, true, speaking), 1.0)
    # In perfect time but a tenth as far: lip sync cannot tell, mouth motion can.
    assert np.isclose(mouth_motion(0.1 * true - 0.2, true, speaking), 0.1)
    assert lip_sync_score(0.1 * true - 0.2, true, speaking) > 0.99
    assert mouth_motion(np.full(48, 0.3), true, speaking) == 0.0  # a frozen mouth
    # Only the speaking frames count: a mouth that moves in silence is not lively speech.
    half = np.arange(48) < 24
    moving_in_silence = np.where(half, 0.3, true)
    assert mouth_motion(moving_in_silence, true, half) < 0.1
    assert mouth_motion(true, true, np.zeros(48, bool)) is None  # no speech
    assert mouth_motion(true, np.full(48, 0.2), speaking) is None  # a true mouth at rest


def test_reactions_are_bumps_above_a_moving_baseline():
    t = np.arange(240)
    pitch = 2 * np.sin(t / 40)  # slow posture sway: not a reaction
    brow = np.zeros(240)
    assert not reaction_frames(pitch, brow).any()
    pitch = pitch.copy()
    pitch[100:112] += 11 * np.sin(np.linspace(0, np.pi, 12))  # a nod
    brow[180:196] += 0.8 * np.sin(np.linspace(0, np.pi, 16))  # a brow raise
    r = reaction_frames(pitch, brow)
    assert r[100:112].any() and r[180:196].any()
    assert not r[:95].any() and not r[120:175].any()


def face_with_features(rows: int, down: np.ndarray) -> np.ndarray:
    """(T, rows, rows, 3) frames: two dark bars (eyes, mouth) moved down by `down` px."""
    frames = np.full((len(down), rows, rows, 3), 200, np.uint8)
    for t, d in enumerate(down):
        for y in (30, 60):
            frames[t, y + int(d) : y + int(d) + 4, 20:76] = 40
    return frames


def test_a_nod_is_the_features_moving_down_and_back():
    down = np.zeros(96, int)
    down[40:46] = 2  # a nod: 2 px down for a quarter of a second
    frames = face_with_features(96, down)
    shift = vertical_shift(frames)
    assert np.allclose(shift[40:46] * 96, 2, atol=0.3) and np.allclose(shift[:40], 0, atol=0.05)
    flat = np.zeros(96)
    r = reaction_frames(flat, flat, shift)
    assert r[40:46].all() and not r[:38].any() and not r[48:].any()
    assert not reaction_frames(flat, flat, vertical_shift(face_with_features(96, 0 * down))).any()


def test_footage_that_never_holds_still_has_no_reactions_to_contrast():
    down = np.where(np.arange(96) % 5 < 2, 2, 0)  # off its rest 40% of the time
    frames = face_with_features(96, down)
    r = reaction_frames(np.zeros(96), np.zeros(96), vertical_shift(frames))
    assert r.all()  # every frame moves: listening and silence look alike, score 0


def test_a_picture_with_no_still_face_has_no_reactions_to_contrast():
    down = np.zeros(96, int)
    down[40:46] = 2  # one nod: found in a still picture
    still = face_with_features(96, down)
    flat = np.zeros(96)
    r = reaction_frames(flat, flat, vertical_shift(still), flicker(still))
    assert r[40:46].all() and not r[:38].any()
    # The same frames under churn that changes them from frame to frame (a random generator's
    # frames): every frame counts, so listening and silence score alike.
    rng = np.random.default_rng(0)
    churn = np.clip(still + rng.normal(0, 40, still.shape), 0, 255).astype(np.uint8)
    assert flicker(churn) > UNSTABLE_FLICKER > flicker(still)
    assert reaction_frames(flat, flat, vertical_shift(churn), flicker(churn)).all()


def test_listening_score_contrasts_listening_with_silence():
    assert np.isclose(listening_score(np.array([30, 100, 2, 100])), 0.28)
    assert listening_score(np.array([30, 100, 30, 100])) == 0.0
    assert listening_score(np.array([30, 100, 0, 5])) is None


def test_flicker_separates_smooth_motion_from_noise():
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 24)[:, None, None, None] * np.ones((24, 8, 8, 3))
    smooth = ramp.astype(np.uint8)
    noise = rng.integers(0, 256, (24, 8, 8, 3), dtype=np.uint8)
    assert flicker(smooth) < 0.01 < 0.2 < flicker(noise)
    assert flicker(np.repeat(smooth[:1], 24, 0)) == 0.0


def test_drift_is_the_worst_relative_degradation_from_minute_one():
    minutes = [
        {"lip_sync": 0.5, "identity": 0.8, "listening": 0.2, "flicker": 0.01},
        {"lip_sync": 0.45, "identity": 0.8, "listening": 0.25, "flicker": 0.01},
        {"lip_sync": 0.5, "identity": 0.6, "listening": 0.2, "flicker": 0.02},
    ]
    d = drift(minutes)
    assert np.isclose(d["lip_sync"], 0.1) and np.isclose(d["identity"], 0.25)
    assert d["listening"] == 0.0 and np.isclose(d["flicker"], 1.0)
    assert np.isclose(d["worst"], 1.0)
    assert drift(minutes[:1])["worst"] is None
    # A mouth that stiffens as the stream goes on is drift too.
    stiff = [m | {"mouth_motion": v} for m, v in zip(minutes, (0.6, 0.6, 0.3))]
    assert np.isclose(drift(stiff)["mouth_motion"], 0.5)


def test_judge_prefers_better_metrics_and_ties_identical_renders():
    good = {"lip_sync": 0.6, "identity": 0.9, "listening": 0.2, "flicker": 0.003}
    bad = {"lip_sync": 0.0, "identity": 0.5, "listening": 0.0, "flicker": 0.2}
    assert preference(good, bad) > 0 > preference(bad, good)
    assert preference({**good, "lip_sync": None}, bad) > 0  # a metric one side lacks is skipped
    r = win_rate([(good, bad), (good, good), (bad, good)])
    assert (r["wins"], r["ties"], r["losses"], r["rate"]) == (1, 1, 1, 0.5)
