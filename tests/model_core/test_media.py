"""model_core/media.py: image and audio validation, resampling, and the atomic MP4 writer."""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageFile

from model_core import media
from model_core.media import MediaError


def _png(path: Path, size=(96, 80), mode="RGB", color=(200, 100, 50)) -> Path:
    Image.new(mode, size, color).save(path, format="PNG")
    return path


# --- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt,ext", [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("BMP", "bmp")]
)
def test_load_image_supported_formats(tmp_path, fmt, ext):
    p = tmp_path / f"a.{ext}"
    Image.new("RGB", (96, 80), (200, 100, 50)).save(p, format=fmt)
    img = media.load_image(p)
    assert img.dtype == np.uint8 and img.shape == (80, 96, 3)
    assert np.abs(img.astype(int) - [200, 100, 50]).max() <= 3


def test_transparent_image_is_flattened_on_white(tmp_path):
    p = _png(tmp_path / "cut.png", mode="RGBA", color=(0, 0, 0, 0))
    assert (media.load_image(p) == 255).all()


def test_greyscale_and_palette_become_rgb(tmp_path):
    g = _png(tmp_path / "g.png", mode="L", color=128)
    assert media.load_image(g).shape == (80, 96, 3)
    pal = tmp_path / "p.png"
    Image.new("RGB", (64, 64), (10, 20, 30)).quantize(4).save(pal)
    assert media.load_image(pal)[0, 0].tolist() == [10, 20, 30]


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: p.write_text("hello, not pixels"), "not an image"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (
            lambda p: Image.new("RGB", (64, 64)).save(p, format="GIF"),
            "unsupported image format GIF",
        ),
        (
            lambda p: Image.new("RGB", (64, 64)).save(p, format="TIFF"),
            "unsupported image format TIFF",
        ),
        (lambda p: Image.new("RGB", (16, 200)).save(p, format="PNG"), "too small"),
    ],
)
def test_bad_images_are_refused_with_a_reason(tmp_path, make, match):
    p = tmp_path / "x.png"
    make(p)
    with pytest.raises(MediaError, match=match) as e:
        media.load_image(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_truncated_image_is_unreadable(tmp_path):
    p = tmp_path / "t.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:400])
    with pytest.raises(MediaError, match="unreadable image|not an image"):
        media.load_image(p)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        media.load_image(tmp_path / "nope.png")
    with pytest.raises(MediaError, match="not a regular file"):
        media.load_image(tmp_path)


def test_file_size_limit(tmp_path):
    p = _png(tmp_path / "a.png")
    with pytest.raises(MediaError, match="image file too large"):
        media.load_image(p, max_bytes=10)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    # 10000 x 10000 one-bit pixels: a ~15 KB file that would decode to 300 MB of RGB.
    p = tmp_path / "bomb.png"
    Image.new("1", (10000, 10000)).save(p)
    assert p.stat().st_size < 100_000

    def no_decode(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(MediaError, match=r"image too large \(10000x10000"):
        media.load_image(p)


def test_fit_image_covers_and_centre_crops():
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, 100:200] = 255  # a white centre third
    out = media.fit_image(img, 64, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert out[32, 32].min() > 200  # the centre survives the crop, undistorted
    assert media.fit_image(out, 64, 64) is out
    assert media.fit_image(img, 32, 128).shape == (32, 128, 3)


# --- audio -----------------------------------------------------------------------------------


def _wav_int(path: Path, rate: int, channels: int, width: int, seconds=0.5, amp=0.5) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    x = amp * np.sin(2 * np.pi * 440 * t)
    data = np.repeat(x[:, None], channels, axis=1)
    if width == 1:
        raw = np.round(data * 127 + 128).astype(np.uint8).tobytes()
    elif width == 3:
        v = np.round(data * (2**23 - 1)).astype("<i4")
        raw = v.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        dt = {2: "<i2", 4: "<i4"}[width]
        raw = np.round(data * (2 ** (8 * width - 1) - 1)).astype(dt).tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


@pytest.mark.parametrize(
    "rate,channels,width",
    [(16000, 1, 2), (44100, 2, 2), (48000, 1, 3), (22050, 2, 1), (8000, 1, 4), (96000, 6, 2)],
)
def test_read_audio_any_rate_channels_depth(tmp_path, rate, channels, width):
    p = _wav_int(tmp_path / "a.wav", rate, channels, width)
    pcm = media.read_audio(p)
    assert pcm.dtype == np.float32 and pcm.ndim == 1
    assert abs(len(pcm) - 8000) <= 32  # 0.5 s at 16 kHz
    assert 0.45 < np.abs(pcm[1000:-1000]).max() < 0.55  # level kept through down-mix/resample


def test_read_float_wav(tmp_path):
    p = tmp_path / "f.wav"
    with av.open(str(p), "w", format="wav") as c:
        s = c.add_stream("pcm_f32le", rate=32000, layout="mono")
        x = (0.25 * np.ones((1, 32000))).astype(np.float32)
        f = av.AudioFrame.from_ndarray(x, format="flt", layout="mono")
        f.sample_rate = 32000
        c.mux(s.encode(f))
        c.mux(s.encode(None))
    pcm = media.read_audio(p)
    assert len(pcm) == 16000 and abs(float(np.median(pcm)) - 0.25) < 1e-3


def test_files_that_are_not_audio(tmp_path):
    txt = tmp_path / "text.wav"
    txt.write_text("RIFF? no, just words " * 20)
    img = _png(tmp_path / "picture.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for p, match in [
        (txt, "not readable as audio"),
        (img, "not an audio file|not readable"),
        (empty, "empty file"),
    ]:
        with pytest.raises(MediaError, match=match) as e:
            media.read_audio(p)
        assert str(p) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(MediaError, match="no such file"):
        media.read_audio(tmp_path / "missing.wav")


def test_video_without_audio_is_not_audio(tmp_path):
    p = tmp_path / "silent.mp4"
    with media.open_mp4(p, 32, 32) as w:
        w.write(np.zeros((2, 32, 32, 3), np.uint8))
    # The writer always adds an audio stream; strip it by remuxing video only.
    q = tmp_path / "video_only.wav"
    with av.open(str(p)) as src, av.open(str(q), "w", format="mp4") as dst:
        vs = dst.add_stream_from_template(src.streams.video[0])
        for pkt in src.demux(src.streams.video[0]):
            if pkt.dts is not None:
                pkt.stream = vs
                dst.mux(pkt)
    with pytest.raises(MediaError, match="no audio stream"):
        media.read_audio(q)


def test_mix_tracks_sums_and_only_scales_when_clipping():
    a, b = np.full(10, 0.3, np.float32), np.full(6, 0.2, np.float32)
    m = media.mix_tracks(a, b)
    assert len(m) == 10 and np.allclose(m[:6], 0.5) and np.allclose(m[6:], 0.3)
    loud = media.mix_tracks(np.full(4, 0.9, np.float32), np.full(4, 0.9, np.float32))
    assert np.abs(loud).max() <= 1.0 + 1e-6


# --- MP4 -------------------------------------------------------------------------------------


def test_mp4_has_exact_frames_fps_and_audio(tmp_path):
    out = tmp_path / "sub" / "clip.mp4"
    with media.open_mp4(out, 64, 96) as w:
        for _ in range(3):
            w.write(np.full((24, 64, 96, 3), 120, np.uint8), np.zeros(16000, np.float32))
    info = media.probe_mp4(out)
    assert info["frames"] == 72 and info["fps"] == 24.0
    assert (info["width"], info["height"], info["video_codec"]) == (96, 64, "h264")
    assert len(info["audio"]) == 1 and info["audio"][0]["codec"] == "aac"
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert c.streams.video[0].average_rate == Fraction(24, 1)
    assert [p.name for p in out.parent.iterdir()] == ["clip.mp4"]  # no temp file left


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_mp4_error_leaves_no_partial_file_and_keeps_old_one(tmp_path, exc):
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"previous render")
    with pytest.raises(exc):
        with media.open_mp4(out, 32, 32) as w:
            w.write(np.zeros((24, 32, 32, 3), np.uint8))
            raise exc()
    assert out.read_bytes() == b"previous render"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_mp4_rejects_odd_sizes_and_wrong_frames(tmp_path):
    with pytest.raises(ValueError, match="even"):
        with media.open_mp4(tmp_path / "a.mp4", 31, 32):
            pass
    with pytest.raises(ValueError, match="expected"):
        with media.open_mp4(tmp_path / "b.mp4", 32, 32) as w:
            w.write(np.zeros((24, 16, 16, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
