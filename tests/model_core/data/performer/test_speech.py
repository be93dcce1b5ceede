import numpy as np

from model_core.data.performer.corpus import corpus, lines_for
from model_core.data.performer.identity import VoiceSpec, sample_identity
from model_core.data.performer.speech import SAMPLE_RATE, EspeakSynth, viseme_of, viseme_track


def test_espeak_speech_has_timed_phonemes(tmp_path):
    synth = EspeakSynth(cache_dir=tmp_path)
    utt = synth.synthesize("Hello there, how are you today?", VoiceSpec("en-us+f3", 50, 160))
    assert utt.pcm.dtype == np.float32 and 1.0 < utt.duration < 4.0
    starts = [p[0] for p in utt.phonemes]
    assert starts == sorted(starts) and len(utt.phonemes) > 10
    a, b = utt.voiced_span()
    assert 0 <= a < 0.3 and utt.duration - 0.4 < b <= utt.duration + 1e-3
    # Cached on disk: a fresh engine loads the same samples instead of synthesizing.
    again = EspeakSynth(cache_dir=tmp_path).synthesize(utt.text, VoiceSpec("en-us+f3", 50, 160))
    np.testing.assert_allclose(again.pcm, utt.pcm, atol=1e-4)
    assert len(list(tmp_path.glob("*.npz"))) == 1


def test_mouth_follows_phonemes():
    utt = EspeakSynth().synthesize("Papa, mama.", sample_identity(0).voice)
    track = viseme_track(utt, 24, int(utt.duration * 24) + 2)
    assert track[:, 0].max() > 0.6  # open on the "a"s
    assert viseme_of("p")[0] == 0.0 and viseme_of("a")[0] > 0.8 and viseme_of("u:")[1] == 1.0
    assert len(utt.pcm) == int(round(utt.duration * SAMPLE_RATE))


def test_corpus_has_held_out_lines():
    assert len(corpus()) > 300
    held, train = lines_for("heldout"), lines_for("train")
    assert held and not {h.text for h in held} & {t.text for t in train}
