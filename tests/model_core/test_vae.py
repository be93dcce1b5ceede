"""Properties of the causal 3D VAE: streaming equals whole-clip, the future never changes the
past, and the Wan2.1 layout (1+4k frames <-> 1+k latent frames, 8x spatial)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from model_core.config import LPMConfig, VAEConfig, VideoConfig
from model_core.vae import LPMCausalVAE, vae_flops_per_chunk

# Two small shapes of the same code: the tiny layout (space-to-depth, temporal kernels only at
# the lowest level) and the Wan layout (no space-to-depth, causal 3D convs at every level).
SMALL = VAEConfig(base_channels=8, channel_mults=(1, 2, 2))
WAN_LIKE = VAEConfig(
    base_channels=4,
    channel_mults=(1, 2, 2, 2),
    temporal_downsample=(False, True, True),
    time_kernel=(3, 3, 3, 3),
    patch_size=1,
    num_res_blocks=2,
)
ATOL = 1e-5


def _vae(cfg: VAEConfig, seed: int = 0) -> LPMCausalVAE:
    torch.manual_seed(seed)
    vae = LPMCausalVAE(cfg).eval()
    # Non-trivial latent statistics so that normalisation is exercised.
    vae.latent_mean.uniform_(-0.5, 0.5)
    vae.latent_std.uniform_(0.5, 2.0)
    return vae


@pytest.fixture(scope="module", params=[SMALL, WAN_LIKE], ids=["tiny-layout", "wan-layout"])
def vae(request) -> LPMCausalVAE:
    return _vae(request.param)


def _video(k: int, h: int = 16, w: int = 24, b: int = 1, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, 1 + 4 * k, h, w, generator=g) * 2 - 1


def _latents(t: int, h: int = 2, w: int = 3, b: int = 1, seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 16, t, h, w, generator=g)


def _split(total: int, cuts: list[int]) -> list[int]:
    """Split `total` items into consecutive segment lengths at the given sorted cut points."""
    points = [0, *sorted(set(c for c in cuts if 0 < c < total)), total]
    return [b - a for a, b in zip(points, points[1:])]


@pytest.mark.parametrize("k", [0, 1, 3])
@pytest.mark.parametrize("hw", [(16, 16), (24, 40)])
def test_shapes_follow_wan_layout(vae, k, hw):
    h, w = hw
    with torch.no_grad():
        z = vae.encode(_video(k, h, w, b=2))
        assert z.shape == (2, 16, 1 + k, h // 8, w // 8)
        mean, logvar = vae.encode_posterior(_video(k, h, w, b=2))
        assert mean.shape == logvar.shape == z.shape
        video = vae.decode(z)
    assert video.shape == (2, 3, 1 + 4 * k, h, w)
    assert video.min() >= -1.0 and video.max() <= 1.0


@settings(max_examples=12, deadline=None)
@given(first=st.integers(0, 3), cuts=st.lists(st.integers(1, 5), max_size=4))
def test_streaming_decode_equals_whole_decode(first, cuts):
    vae = _vae(SMALL)
    z = _latents(7)
    with torch.no_grad():
        whole = vae.decode(z)
        stream = vae.stream_decoder()
        pieces = [stream.push(z[:, :, : 1 + first])]
        start = 1 + first
        for n in _split(7 - start, cuts):
            out = stream.push(z[:, :, start : start + n])
            assert out.shape[2] == 4 * n
            pieces.append(out)
            start += n
    assert pieces[0].shape[2] == 1 + 4 * first
    torch.testing.assert_close(torch.cat(pieces, dim=2), whole, atol=ATOL, rtol=0)


@pytest.mark.parametrize("chunks", [[1, 1, 1, 1, 1, 1], [1, 2, 3], [3, 3], [1, 5]])
def test_streaming_decode_equals_whole_decode_wan_layout(chunks):
    vae = _vae(WAN_LIKE)
    z = _latents(sum(chunks))
    with torch.no_grad():
        whole = vae.decode(z)
        stream = vae.stream_decoder()
        out = []
        for i, n in enumerate(chunks):
            start = sum(chunks[:i])
            out.append(stream.push(z[:, :, start : start + n]))
    torch.testing.assert_close(torch.cat(out, dim=2), whole, atol=ATOL, rtol=0)


@settings(max_examples=10, deadline=None)
@given(first=st.integers(0, 2), cuts=st.lists(st.integers(1, 4), max_size=3))
def test_streaming_encode_equals_whole_encode(first, cuts):
    vae = _vae(SMALL)
    video = _video(5)
    with torch.no_grad():
        whole = vae.encode(video)
        stream = vae.stream_encoder()
        n0 = 1 + 4 * first
        pieces = [stream.push(video[:, :, :n0])]
        start = n0
        for groups in _split(5 - first, cuts):
            pieces.append(stream.push(video[:, :, start : start + 4 * groups]))
            assert pieces[-1].shape[2] == groups
            start += 4 * groups
    torch.testing.assert_close(torch.cat(pieces, dim=2), whole, atol=ATOL, rtol=0)


def test_streaming_encode_equals_whole_encode_wan_layout():
    vae = _vae(WAN_LIKE)
    video = _video(4)
    with torch.no_grad():
        whole = vae.encode(video)
        stream = vae.stream_encoder()
        out = [
            stream.push(video[:, :, :1]),
            stream.push(video[:, :, 1:9]),
            stream.push(video[:, :, 9:]),
        ]
    torch.testing.assert_close(torch.cat(out, dim=2), whole, atol=ATOL, rtol=0)


@pytest.mark.parametrize("j", [1, 2, 4])
def test_decode_is_causal(vae, j):
    """Changing latent frame j (frames 4j-3 .. 4j) never changes decoded frames before 4j-3."""
    z = _latents(5)
    z2 = z.clone()
    z2[:, :, j:] += torch.randn_like(z2[:, :, j:])
    with torch.no_grad():
        a, b = vae.decode(z), vae.decode(z2)
    first_changed = 4 * j - 3
    assert torch.equal(a[:, :, :first_changed], b[:, :, :first_changed])
    assert not torch.equal(a[:, :, first_changed:], b[:, :, first_changed:])


@pytest.mark.parametrize("f", [1, 4, 5, 12])
def test_encode_is_causal(vae, f):
    """Changing frame f (latent group ceil(f/4)) never changes earlier latent frames."""
    video = _video(4)
    video2 = video.clone()
    video2[:, :, f:] = torch.rand_like(video2[:, :, f:]) * 2 - 1
    with torch.no_grad():
        a, b = vae.encode(video), vae.encode(video2)
    group = -(-f // 4)
    assert torch.equal(a[:, :, :group], b[:, :, :group])
    assert not torch.equal(a[:, :, group:], b[:, :, group:])


def test_image_is_the_first_frame_path(vae):
    img = _video(0, 24, 32)[:, :, 0]
    clip = torch.cat([img.unsqueeze(2), _video(2, 24, 32)[:, :, 1:]], dim=2)
    with torch.no_grad():
        z_img = vae.encode_image(img)
        z_clip = vae.encode(clip)
    assert z_img.shape == (1, 16, 1, 3, 4)
    torch.testing.assert_close(z_img, z_clip[:, :, :1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("side", [64, 128])
def test_tiny_reference_images(side):
    vae = LPMCausalVAE(LPMConfig.preset("tiny").vae).eval()
    with torch.no_grad():
        z = vae.encode_image(torch.zeros(2, 3, side, side))
    assert z.shape == (2, 16, 1, side // 8, side // 8)


def test_tiny_chunk_decodes_to_24_frames_at_128():
    cfg = LPMConfig.preset("tiny")
    vae = LPMCausalVAE(cfg.vae).eval()
    stream = vae.stream_decoder()
    h, w = cfg.latent_hw
    with torch.no_grad():
        assert stream.push(torch.randn(1, 16, 1, h, w)).shape == (1, 3, 1, 128, 128)
        chunk = stream.push(torch.randn(1, 16, cfg.latent_frames_per_chunk, h, w))
    assert chunk.shape == (1, 3, cfg.video.chunk_frames, 128, 128)


def test_stream_cache_stays_bounded():
    vae = _vae(SMALL)
    stream = vae.stream_decoder()
    with torch.no_grad():
        stream.push(_latents(1))
        sizes = []
        for i in range(6):
            stream.push(_latents(2, seed=i))
            sizes.append(stream.cache.nbytes)
    assert len(set(sizes)) == 1
    stream.reset()
    assert stream.cache.nbytes == 0 and stream.latent_frames_seen == 0


def test_reset_restarts_the_stream():
    vae = _vae(SMALL)
    z = _latents(3)
    stream = vae.stream_decoder()
    with torch.no_grad():
        first = stream.push(z)
        stream.push(_latents(2, seed=9))
        stream.reset()
        again = stream.push(z)
    assert torch.equal(first, again)


def test_bad_frame_counts_are_rejected():
    vae = _vae(SMALL)
    with torch.no_grad():
        with pytest.raises(ValueError, match="1\\+4k"):
            vae.encode(torch.zeros(1, 3, 4, 16, 16))
        with pytest.raises(ValueError, match="multiples of 8"):
            vae.encode(torch.zeros(1, 3, 1, 12, 16))
        stream = vae.stream_encoder()
        stream.push(torch.zeros(1, 3, 1, 16, 16))
        with pytest.raises(ValueError, match="4n"):
            stream.push(torch.zeros(1, 3, 3, 16, 16))
        with pytest.raises(ValueError, match="latents"):
            vae.decode(torch.zeros(1, 8, 2, 2, 2))


def test_inconsistent_config_is_rejected():
    with pytest.raises(ValueError, match="spatial_factor"):
        LPMCausalVAE(VAEConfig(patch_size=1))
    with pytest.raises(ValueError, match="temporal_factor"):
        LPMCausalVAE(VAEConfig(temporal_downsample=(True, False)))


def test_posterior_trains():
    vae = _vae(SMALL).train()
    video = _video(1)
    mean, logvar = vae.encode_posterior(video)
    z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
    recon = vae.decode(vae.normalize(z), clamp=False)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
    ((recon - video).pow(2).mean() + kl).backward()
    assert all(p.grad is not None for p in vae.encoder.parameters())
    assert vae.decoder.conv_in.conv.weight.grad.abs().sum() > 0


def test_flops_scale_with_chunk_length():
    cfg = LPMConfig.preset("tiny")
    one = vae_flops_per_chunk(cfg.vae, cfg.video)
    two = vae_flops_per_chunk(cfg.vae, VideoConfig(chunk_frames=48))
    assert one["encode"] > 0 and one["decode"] > 0
    assert two["decode"] == pytest.approx(2 * one["decode"], rel=1e-6)
    assert two["encode"] == pytest.approx(2 * one["encode"], rel=1e-6)
