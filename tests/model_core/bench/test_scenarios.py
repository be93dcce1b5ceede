import numpy as np
import pytest
import torch

from model_core.bench.scenarios import (
    KINDS,
    MIX,
    ScenarioRenderer,
    scenario_counts,
    scenario_specs,
)
from model_core.data.performer.corpus import lines_for
from model_core.data.performer.identity import split_of


def test_default_bench_has_the_stated_mix_and_at_least_100_samples():
    specs = scenario_specs(100, 4)
    assert len(specs) >= 100
    counts = {k: sum(s.kind == k for s in specs) for k in KINDS}
    assert counts == {"speaking": 40, "listening": 20, "dialogue": 20, "actions": 10, "unseen": 10}


@pytest.mark.parametrize("n", [5, 10, 37, 100, 250])
def test_counts_sum_to_n_and_follow_the_mix(n):
    counts = scenario_counts(n)
    assert sum(counts.values()) == n
    for k, p in MIX.items():
        assert abs(counts[k] - n * p) < 1


def test_prefix_keeps_the_mix():
    """Kinds are interleaved, so a quick prefix of the bench is still a mix."""
    kinds = [s.kind for s in scenario_specs(100, 4)[:10]]
    assert {k: kinds.count(k) for k in KINDS} == scenario_counts(10)


def test_specs_are_seeded_and_use_held_out_identities():
    a, b = scenario_specs(20, 2, seed=3), scenario_specs(20, 2, seed=3)
    assert a == b
    assert a != scenario_specs(20, 2, seed=4)
    assert all(split_of(s.identity_index) == "heldout" for s in a)
    assert len({(s.population, s.identity_index) for s in a}) == len(a)
    assert {s.population for s in a if s.kind == "unseen"} != {0}


@pytest.fixture(scope="module")
def dialogue_sample():
    spec = next(s for s in scenario_specs(10, 2) if s.kind == "dialogue")
    return ScenarioRenderer().render(spec)


def test_rendered_sample_has_footage_audio_references_and_labels(dialogue_sample):
    s = dialogue_sample
    assert s.frames.shape == (48, 128, 128, 3) and s.frames.dtype == np.uint8
    assert s.speak.shape == s.listen.shape == (32000,)
    assert s.refs.global_image.shape == (128, 128, 3)
    assert set(s.refs.body) == {"front", "left", "right", "back"} and len(s.refs.face) == 8
    for arr in (s.state, s.mouth_open, s.head_yaw, s.reaction, s.speech_energy):
        assert len(arr) == 48
    # A dialogue window holds both voices.
    assert (s.state == "speaking").any() and (s.state == "listening").any()


def test_the_generators_get_a_picture_framed_like_the_footage(dialogue_sample):
    """The global reference the generators get is the character at rest in the footage's
    own camera and scene, not a frame of the window; the judge keeps the studio set."""
    s = dialogue_sample
    pic = s.picture
    assert pic.shape == s.frames[0].shape and pic.dtype == np.uint8
    assert s.model_refs.global_image is pic
    assert s.model_refs.body.keys() == s.refs.body.keys()
    assert s.model_refs.face.keys() == s.refs.face.keys()
    assert s.refs.global_image is not pic
    # The top corners are the scene's background, in the picture as in the footage, and not
    # the studio grey of the reference set.
    corner = (slice(0, 6), slice(0, 6))
    assert np.abs(pic[corner].astype(int) - s.frames[0][corner].astype(int)).mean() < 3
    assert np.abs(pic[corner].astype(int) - s.refs.global_image[corner].astype(int)).mean() > 5
    assert not any(np.array_equal(pic, f) for f in s.frames)


def test_sample_speech_comes_from_held_out_lines(dialogue_sample):
    heldout = {line.text for line in lines_for("heldout")}
    said = dialogue_sample.text.split('saying "')[-1].rstrip('"')
    assert said in heldout


def test_rendering_is_deterministic(dialogue_sample):
    again = ScenarioRenderer().render(dialogue_sample.spec)
    assert np.array_equal(again.frames, dialogue_sample.frames)
    assert np.array_equal(again.speak, dialogue_sample.speak)
    assert np.array_equal(again.picture, dialogue_sample.picture)


class _RecordingPipe:
    """Stands in for LPMPipeline.encode_references: keeps what a system was given."""

    def __init__(self):
        self.given = []

    def encode_references(self, refs):
        from model_core.references import EncodedReferences

        self.given.append(refs)
        return EncodedReferences(torch.zeros(1), {"front": torch.zeros(1)}, {})


@pytest.mark.parametrize("system", ["online", "single_ref", "base", "merged_audio"])
def test_every_generator_is_given_the_framed_picture(dialogue_sample, system):
    from model_core.bench.systems import SystemRunner

    pipe = _RecordingPipe()
    enc = SystemRunner(system, pipe).references(dialogue_sample)
    (given,) = pipe.given
    assert given.global_image is dialogue_sample.picture
    assert given.body.keys() == dialogue_sample.refs.body.keys()
    assert (not enc.body) == (system == "single_ref")  # single_ref keeps the picture alone


def test_a_twin_plays_the_same_performance_with_another_face(dialogue_sample):
    from model_core.bench.validation import corrupt
    from model_core.data.performer.identity import twin_identity

    s = dialogue_sample
    twin = ScenarioRenderer().render(s.spec, twin_identity(s.identity, "face"))
    assert twin.identity.id.endswith("face-twin")
    np.testing.assert_array_equal(twin.mouth_open, s.mouth_open)
    np.testing.assert_array_equal(twin.state, s.state)
    np.testing.assert_array_equal(twin.speak, s.speak)
    diff = np.abs(twin.frames.astype(int) - s.frames.astype(int))
    assert diff.mean() > 1  # another face
    assert np.abs(twin.frames.mean((0, 1, 2)) - s.frames.mean((0, 1, 2))).max() < 12  # same colours
    np.testing.assert_array_equal(corrupt("face_twin", [s], 0, seed=0), twin.frames)
