"""Sink + sliding window: streaming equals a whole-sequence forward under the same mask,
positions stay bounded, memory stays constant."""

import pytest
import torch

from model_core.dit import LPMAudioInputs, LPMTransformer, latent_frame_spans
from model_core.kv_cache import SinkWindowKVCache
from tests.model_core.conftest import small_dit_config

F_CHUNK, HW = 2, (4, 4)  # 2 latent frames per chunk, 4x4 tokens per frame


def setup(seed=0):
    torch.manual_seed(seed)
    net = LPMTransformer(small_dit_config(), z_dim=16, text_dim=8, audio_dim=8).eval()
    sink = net.encode_sink(
        [(torch.randn(1, 16, 1, 8, 8), 0, 0), (torch.randn(1, 16, 1, 4, 4), 2, 0)]
    )
    return net, sink, torch.randn(1, 3, 8)


def block_causal_window_mask(chunks: int, window: int | None) -> torch.Tensor:
    c = torch.arange(chunks * F_CHUNK) // F_CHUNK
    m = c[:, None] >= c[None, :]
    if window is not None:
        m &= (c[:, None] - c[None, :]) <= window
    return m


@pytest.mark.parametrize("window", [1, 2, None])
@pytest.mark.parametrize("t_current", [0.0, 0.7])
def test_streaming_equals_whole_sequence_under_sink_window_mask(window, t_current):
    """Each chunk, streamed against the cache of earlier clean chunks, gives what one masked
    forward over the whole sequence gives (earlier chunks clean at t=0, this chunk at t)."""
    net, sink, ctx = setup()
    chunks = 5
    clean = torch.randn(1, 16, chunks * F_CHUNK, *[2 * s for s in HW])
    noisy = torch.randn_like(clean)
    n_audio = chunks * F_CHUNK * 4
    speak, listen = torch.randn(1, n_audio, 8), torch.randn(1, n_audio, 8)
    spans = latent_frame_spans(chunks * F_CHUNK, 0, 4)
    cache = SinkWindowKVCache(sink, window, F_CHUNK, HW, video_rope_offset=4)
    with torch.no_grad():
        for c in range(chunks):
            sl = slice(c * F_CHUNK, (c + 1) * F_CHUNK)
            audio = LPMAudioInputs(speak, listen, spans[sl])
            kw = dict(
                sink=sink,
                context=ctx,
                audio=audio,
                frame_pos=cache.current_frame_pos(),
                prefix=cache.prefix(net.rope.tables),
            )
            streamed = net(noisy[:, :, sl], torch.full((1, F_CHUNK), t_current), **kw)
            _, kvs = net(clean[:, :, sl], torch.zeros(1, F_CHUNK), return_kv=True, **kw)
            cache.append(kvs)
            # Reference: whole sequence up to c, earlier chunks clean, chunk c noisy.
            seq = torch.cat([clean[:, :, : c * F_CHUNK], noisy[:, :, sl]], dim=2)
            t = torch.zeros(1, (c + 1) * F_CHUNK)
            t[:, c * F_CHUNK :] = t_current
            whole = net(
                seq,
                t,
                sink=sink,
                context=ctx,
                audio=LPMAudioInputs(speak, listen, spans[: (c + 1) * F_CHUNK]),
                frame_pos=torch.arange((c + 1) * F_CHUNK) + 4,
                frame_mask=block_causal_window_mask(c + 1, window),
            )
            assert torch.allclose(streamed, whole[:, :, sl], atol=2e-5), (c, window)


def test_positions_stay_bounded_and_memory_constant_once_the_window_fills():
    net, sink, ctx = setup()
    cache = SinkWindowKVCache(sink, 2, F_CHUNK, HW, video_rope_offset=4)
    sizes, max_pos = [], []
    with torch.no_grad():
        for _ in range(8):
            pos = cache.current_frame_pos()
            prefix = cache.prefix(net.rope.tables)
            _, kvs = net(
                torch.randn(1, 16, F_CHUNK, 8, 8),
                torch.zeros(1, F_CHUNK),
                sink=sink,
                context=ctx,
                frame_pos=pos,
                prefix=prefix,
                return_kv=True,
            )
            cache.append(kvs)
            sizes.append(cache.nbytes())
            max_pos.append(int(pos.max()))
    assert len(cache) == 2
    assert sizes[2:] == [sizes[2]] * 6  # constant after the window is full
    assert max(max_pos) == 4 + 3 * F_CHUNK - 1  # never beyond the window + current chunk


def test_naive_cache_keeps_growing():
    net, sink, ctx = setup()
    cache = SinkWindowKVCache(sink, None, F_CHUNK, HW, video_rope_offset=4)
    with torch.no_grad():
        for _ in range(4):
            _, kvs = net(
                torch.randn(1, 16, F_CHUNK, 8, 8),
                torch.zeros(1, F_CHUNK),
                sink=sink,
                context=ctx,
                frame_pos=cache.current_frame_pos(),
                prefix=cache.prefix(net.rope.tables),
                return_kv=True,
            )
            cache.append(kvs)
    assert len(cache) == 4 and int(cache.current_frame_pos().max()) == 4 + 5 * F_CHUNK - 1


def test_sink_is_never_evicted():
    net, sink, ctx = setup()
    cache = SinkWindowKVCache(sink, 1, F_CHUNK, HW, video_rope_offset=4)
    k0 = [k.clone() for k in sink.k]
    for _ in range(3):
        cache.append(
            [(torch.randn(1, F_CHUNK * 16, 2, 32), torch.randn(1, F_CHUNK * 16, 2, 32))] * 4
        )
    assert all(torch.equal(a, b) for a, b in zip(cache.sink.k, k0, strict=True))
