"""Properties of the LPM transformer: dual audio injection and reference tokens."""

import numpy as np
import pytest
import torch

from model_core.config import LPMConfig
from model_core.dit import LPMAudioInputs, LPMTransformer, latent_frame_spans
from model_core.references import EncodedReferences, face_slot_order
from tests.model_core.conftest import small_dit_config

AUDIO_DIM, TEXT_DIM = 16, 24


def make_net(**kw) -> LPMTransformer:
    return LPMTransformer(
        small_dit_config(**kw), z_dim=16, text_dim=TEXT_DIM, audio_dim=AUDIO_DIM
    ).eval()


def sink_for(net):
    g = torch.Generator().manual_seed(7)
    return net.encode_sink([(torch.randn(1, 16, 1, 8, 8, generator=g), 0, 0)])


def run_capture(net, z, audio, ctx):
    """Forward once; return each block's output and the audio track each layer read."""
    outs, tracks = [], []
    hooks = [b.register_forward_hook(lambda m, a, o: outs.append(o[0])) for b in net.blocks]
    hooks += [
        b.audio_attn.register_forward_hook(lambda m, a, o: tracks.append(a[1])) for b in net.blocks
    ]
    with torch.no_grad():
        net(
            z,
            torch.full((1, z.shape[2]), 0.5),
            sink=sink_for(net),
            frame_pos=torch.arange(z.shape[2]) + 4,
            context=ctx,
            audio=audio,
        )
    for h in hooks:
        h.remove()
    return outs, tracks


def test_even_layers_read_speaking_and_odd_layers_read_listening():
    net = make_net()
    frames = 6
    audio = LPMAudioInputs(
        torch.randn(1, 24, AUDIO_DIM),
        torch.randn(1, 24, AUDIO_DIM),
        latent_frame_spans(frames, 0, 4),
    )
    _, tracks = run_capture(
        net, torch.randn(1, 16, frames, 8, 8), audio, torch.randn(1, 5, TEXT_DIM)
    )
    assert len(tracks) == 4
    for i, t in enumerate(tracks):
        assert t is (audio.listen if i % 2 else audio.speak), f"layer {i} read the wrong track"


def test_listening_audio_does_not_reach_even_layer_zero_but_reaches_layer_one():
    net = make_net()
    z, ctx = torch.randn(1, 16, 6, 8, 8), torch.randn(1, 5, TEXT_DIM)
    spans = latent_frame_spans(6, 0, 4)
    speak, listen = torch.randn(1, 24, AUDIO_DIM), torch.randn(1, 24, AUDIO_DIM)
    a, _ = run_capture(net, z, LPMAudioInputs(speak, listen, spans), ctx)
    b, _ = run_capture(net, z, LPMAudioInputs(speak, listen + 1.0, spans), ctx)
    c, _ = run_capture(net, z, LPMAudioInputs(speak + 1.0, listen, spans), ctx)
    assert torch.equal(a[0], b[0])
    assert not torch.allclose(a[1], b[1])
    assert not torch.allclose(a[0], c[0])


@pytest.mark.parametrize("frame", [0, 5, 11, 17, 23])
def test_speaking_window_is_frame_local(frame):
    """Changing speaking audio at video frame j changes only latent frames whose narrow
    window [first - before, last + after] contains j."""
    net = make_net(speak_window=(2, 0))
    z, ctx = torch.randn(1, 16, 6, 8, 8), torch.randn(1, 5, TEXT_DIM)
    spans = latent_frame_spans(6, 0, 4)
    speak, listen = torch.randn(1, 24, AUDIO_DIM), torch.randn(1, 24, AUDIO_DIM)
    moved = speak.clone()
    moved[:, frame] += 3.0
    a, _ = run_capture(net, z, LPMAudioInputs(speak, listen, spans), ctx)
    b, _ = run_capture(net, z, LPMAudioInputs(moved, listen, spans), ctx)
    per_frame_change = (a[0] - b[0]).abs().reshape(1, 6, 16, -1).amax(dim=(0, 2, 3))
    for f in range(6):
        first, last = spans[f].tolist()
        inside = first - 2 <= frame <= last
        assert bool(per_frame_change[f] > 0) == inside, (f, frame, per_frame_change)


def test_listening_window_is_wide():
    """An odd layer reacts to listening audio from well before the latent frame (the whole
    utterance), but never to audio after it."""
    net = make_net(listen_window=(48, 0))
    z, ctx = torch.randn(1, 16, 6, 8, 8), torch.randn(1, 5, TEXT_DIM)
    spans = latent_frame_spans(6, 48, 4)  # the chunk starts after 48 frames of history
    speak, listen = torch.randn(1, 72, AUDIO_DIM), torch.randn(1, 72, AUDIO_DIM)
    early = listen.clone()
    early[:, 5] += 3.0  # 43 frames before the chunk's first frame
    a, _ = run_capture(net, z, LPMAudioInputs(speak, listen, spans), ctx)
    b, _ = run_capture(net, z, LPMAudioInputs(speak, early, spans), ctx)
    change = (a[1] - b[1]).abs().reshape(6, 16, -1).amax(dim=(1, 2))
    assert change[0] > 0  # latent frame 0 covers frames 48..51: window 3..51 includes 5
    late = listen.clone()
    late[:, 71] += 3.0  # the last frame: only the last latent frame may see it
    c, _ = run_capture(net, z, LPMAudioInputs(speak, late, spans), ctx)
    change = (a[1] - c[1]).abs().reshape(6, 16, -1).amax(dim=(1, 2))
    assert torch.all(change[:5] == 0) and change[5] > 0


def test_reference_types_have_distinct_rope_slots_and_add_no_parameters():
    cfg = LPMConfig.preset("tiny")
    refs = EncodedReferences(
        torch.randn(1, 16, 1, 16, 16),
        body={v: torch.randn(1, 16, 1, 16, 16) for v in cfg.refs.body_views},
        face={f: torch.randn(1, 16, 1, 8, 8) for f in cfg.refs.face_labels},
    )
    layout = refs.layout(cfg)
    assert len(layout) == 13
    slots = {"global": set(), "body": set(), "face": set()}
    names = ["global"] + ["body"] * 4 + ["face"] * 8
    for (_z, slot, _w0), name in zip(layout, names, strict=True):
        slots[name].add(slot)
    assert all(len(s) == 1 for s in slots.values())
    assert len(set.union(*slots.values())) == 3  # three types, three temporal slots
    assert max(set.union(*slots.values())) < cfg.refs.video_rope_offset
    # Within a type, every reference has its own horizontal place.
    body_offsets = [w0 for (_, s, w0) in layout if s == cfg.refs.rope_slot_body]
    face_offsets = [w0 for (_, s, w0) in layout if s == cfg.refs.rope_slot_face]
    assert len(set(body_offsets)) == 4 and len(set(face_offsets)) == 8
    # The sink is built from these tokens with the trunk's own weights: no new parameters.
    net = make_net()
    before = sum(p.numel() for p in net.parameters())
    sink = net.encode_sink([(z[..., :8, :8], s, w0) for z, s, w0 in layout])
    assert sink.num_tokens == 13 * 16
    assert sum(p.numel() for p in net.parameters()) == before
    assert not [n for n, _ in net.named_parameters() if "ref" in n]


def test_reference_slots_change_the_output():
    """The same latent at another type's slot is seen differently: slots carry meaning."""
    net = make_net()
    zr = torch.randn(1, 16, 1, 8, 8)
    z, ctx = torch.randn(1, 16, 2, 8, 8), torch.randn(1, 5, TEXT_DIM)
    outs = []
    for slot in (0, 1, 2):
        sink = net.encode_sink([(zr, slot, 0)])
        with torch.no_grad():
            outs.append(
                net(
                    z,
                    torch.full((1, 2), 0.5),
                    sink=sink,
                    frame_pos=torch.arange(2) + 4,
                    context=ctx,
                )
            )
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])


def test_custom_face_labels_fill_free_places():
    cfg = LPMConfig.preset("tiny").refs
    order = face_slot_order(["smile", "wink", "neutral"], cfg)
    assert dict(order)["neutral"] == 0 and dict(order)["smile"] == 1
    assert dict(order)["wink"] == 2  # first place not taken by a known label
    assert len({i for _, i in order}) == 3


def test_patchify_roundtrip():
    net = make_net()
    z = torch.randn(2, 16, 3, 8, 12)
    x, grid = net.patchify(z)
    assert x.shape == (2, 3 * 4 * 6, 64) and grid == (3, 4, 6)
    # unpatchify inverts the token layout of a (1,2,2) patch head output
    tokens = torch.from_numpy(np.arange(2 * 72 * 64, dtype=np.float32)).view(2, 72, 64)
    assert net.unpatchify(tokens, grid).shape == (2, 16, 3, 8, 12)


def test_audio_norm_reads_the_features_shape_not_their_size():
    """With `audio_norm`, scaling the audio features (as a training run that shrinks its
    encoder's output does) leaves the audio cross-attention unchanged; without it, it does not."""
    from model_core.attention import LPMAudioCrossAttention
    from model_core.rope import rope_1d_tables

    torch.manual_seed(0)
    x, audio = torch.randn(1, 6, 32), torch.randn(1, 5, 16)
    mask = torch.ones(6, 5, dtype=torch.bool)
    ropes = (
        rope_1d_tables(torch.zeros(6, dtype=torch.long), 16),
        rope_1d_tables(torch.arange(5), 16),
    )
    for normalize, same in ((True, True), (False, False)):
        att = LPMAudioCrossAttention(32, 16, 2, normalize=normalize)
        full, small = att(x, audio, mask, *ropes), att(x, 0.1 * audio, mask, *ropes)
        assert torch.allclose(full, small, atol=1e-4) == same


def test_set_audio_norm_turns_it_on_everywhere_without_touching_a_shared_config():
    from model_core.model import LPMModel
    from tests.model_core.train.conftest import micro_config

    cfg = micro_config()
    model = LPMModel(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.set_audio_norm(True)
    assert cfg.dit.audio_norm is False  # the shared config is as it was
    assert model.cfg.dit.audio_norm is True
    for net in (model.base, model.backbone, model.refiner):
        assert net.cfg.audio_norm and all(b.audio_attn.normalize for b in net.blocks)
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in after)


def _velocity(net, z, sink, ctx):
    with torch.no_grad():
        return net(
            z,
            torch.full((1, z.shape[2]), 0.5),
            sink=sink,
            frame_pos=torch.arange(z.shape[2]) + 4,
            context=ctx,
        )


def test_set_ref_concat_starts_as_the_same_model_and_then_sees_the_reference_per_frame():
    """`set_ref_concat` widens every patch embedding by z_dim zero-weighted channels: the
    model's output is unchanged until trained; with weights there, the global reference
    reaches every frame through them; the shared config is left as it was."""
    from model_core.model import LPMModel, build_model
    from tests.model_core.train.conftest import micro_config

    cfg = micro_config()
    model = LPMModel(cfg).eval()
    z_dim = cfg.vae.z_dim
    h, w = cfg.latent_hw
    torch.manual_seed(0)
    ref = torch.randn(1, z_dim, 1, h, w)
    z, ctx = torch.randn(1, z_dim, 2, h, w), torch.randn(1, 3, cfg.text.dim)
    net = model.backbone
    before = _velocity(net, z, net.encode_sink([(ref, 0, 0)]), ctx)
    model.set_ref_concat()
    assert cfg.dit.ref_concat is False and model.cfg.dit.ref_concat is True
    for n in (model.base, model.backbone, model.refiner):
        assert n.cfg.ref_concat and n.patch_embedding.in_channels == 2 * z_dim
    sink = net.encode_sink([(ref, 0, 0)])
    assert sink.image is ref
    assert torch.allclose(_velocity(net, z, sink, ctx), before, atol=1e-6)
    with torch.no_grad():
        net.patch_embedding.weight[:, z_dim:].normal_(0, 0.1)
    other = net.encode_sink([(ref, 0, 0)])
    other.image = torch.randn_like(ref)  # the same sink tokens, another per-frame reference
    assert not torch.allclose(_velocity(net, z, sink, ctx), _velocity(net, z, other, ctx))
    rebuilt = build_model(model.cfg)
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_the_concatenated_reference_is_the_global_picture():
    """A `ref_concat` transformer copies the picture of the character, the global image
    (framed like the video in the `framed_global` recipe), whatever faces come with it."""
    from model_core.model import LPMModel
    from tests.model_core.train.conftest import micro_config

    cfg = micro_config()
    model = LPMModel(cfg).eval()
    model.set_ref_concat()
    h, w = cfg.latent_hw
    g = torch.randn(2, cfg.vae.z_dim, 1, h, w)
    refs = EncodedReferences(g, {}, {"neutral": torch.randn(2, cfg.vae.z_dim, 1, 2, 2)})
    assert model.backbone.encode_sink(refs.layout(model.cfg)).image is g
    assert model.backbone.encode_sink(refs.only_global().layout(model.cfg)).image is g
