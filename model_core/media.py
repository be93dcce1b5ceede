"""Media I/O at the edges of the model: reference images in, audio tracks in, MP4 out.

Everything here validates what a user hands over and fails with a `MediaError` whose message
names the file and the problem in one line, so a CLI can print it as is. The model itself
only ever sees uint8 RGB arrays at its own resolution and 16 kHz mono float32 audio.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SAMPLE_RATE = 16000

# Formats a user plausibly has a portrait in; anything else PIL happens to parse (EPS, ICO,
# TIFF stacks...) is refused with a message that lists these.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
MAX_IMAGE_BYTES = 32 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000  # checked from the header, before any pixel is decoded
MIN_IMAGE_SIDE = 32
MAX_AUDIO_BYTES = 1024 * 1024 * 1024


class MediaError(ValueError):
    """A user-supplied media file is unusable; the message names the file and why."""


# --- images ----------------------------------------------------------------------------------


def load_image(
    path: str | os.PathLike,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    min_side: int = MIN_IMAGE_SIDE,
) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3), refusing anything unsafe or unusable.

    The pixel count is checked from the header before decoding, so a decompression bomb (a
    small file that expands to gigabytes) is refused without allocating its pixels.
    """
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: no such file")
    if not p.is_file():
        raise MediaError(f"{p}: not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise MediaError(f"{p}: empty file, not an image")
    if size > max_bytes:
        raise MediaError(
            f"{p}: image file too large ({size / 2**20:.1f} MiB > {max_bytes / 2**20:.0f} MiB)"
        )
    try:
        # PIL's own bomb guard raises at 2x MAX_IMAGE_PIXELS; ours below is stricter and
        # reports the actual dimensions.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
        with im:
            fmt = im.format
            w, h = im.size
            if fmt not in IMAGE_FORMATS:
                raise MediaError(
                    f"{p}: unsupported image format {fmt}; use one of {', '.join(IMAGE_FORMATS)}"
                )
            if w * h > max_pixels:
                raise MediaError(
                    f"{p}: image too large ({w}x{h} = {w * h / 1e6:.1f} MP > "
                    f"{max_pixels / 1e6:.0f} MP)"
                )
            if min(w, h) < min_side:
                raise MediaError(
                    f"{p}: image too small ({w}x{h}; each side must be >= {min_side} px)"
                )
            im.load()
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im)
    except MediaError:
        raise
    except Image.DecompressionBombError as e:
        raise MediaError(f"{p}: image too large ({e})") from None
    except UnidentifiedImageError:
        raise MediaError(f"{p}: not an image file (or a format PIL cannot read)") from None
    except (OSError, SyntaxError, ValueError) as e:
        # Truncated or corrupt data surfaces only when the pixels are decoded.
        raise MediaError(f"{p}: unreadable image ({e})") from None
    return np.array(rgb, dtype=np.uint8)  # a writable copy: torch.from_numpy warns otherwise


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent portraits (cut-outs) are flattened onto white, like a studio backdrop.
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")


def fit_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to cover (height, width), then centre-crop: no distortion, no borders."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected uint8 (H, W, 3), got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    scale = max(height / h, width / w)
    nh, nw = max(height, math.ceil(h * scale)), max(width, math.ceil(w * scale))
    im = Image.fromarray(image).resize((nw, nh), Image.Resampling.LANCZOS)
    top, left = (nh - height) // 2, (nw - width) // 2
    return np.array(im.crop((left, top, left + width, top + height)), dtype=np.uint8)


# --- audio -----------------------------------------------------------------------------------


def read_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an audio file (WAV of any rate, channel count and bit depth, or anything FFmpeg
    reads) to mono float32 in [-1, 1] at `sample_rate`. Channels are averaged."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: no such file")
    if not p.is_file():
        raise MediaError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: empty file, not audio")
    if p.stat().st_size > MAX_AUDIO_BYTES:
        raise MediaError(f"{p}: audio file too large (> {MAX_AUDIO_BYTES // 2**20} MiB)")
    try:
        with av.open(str(p), mode="r") as container:
            if not container.streams.audio:
                raise MediaError(f"{p}: not an audio file (no audio stream found)")
            stream = container.streams.audio[0]
            # Planar float at the source layout; we average channels ourselves so a stereo
            # file with the voice in one channel keeps its level predictable.
            resampler = av.AudioResampler(format="fltp", rate=sample_rate)
            parts: list[np.ndarray] = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().mean(axis=0))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().mean(axis=0))
    except MediaError:
        raise
    except (av.FFmpegError, ValueError, OSError) as e:
        raise MediaError(f"{p}: not readable as audio ({_short(e)})") from None
    if not parts or sum(len(x) for x in parts) == 0:
        raise MediaError(f"{p}: contains no audio samples")
    pcm = np.concatenate(parts).astype(np.float32)
    if not np.all(np.isfinite(pcm)):
        raise MediaError(f"{p}: audio contains NaN or infinite samples")
    return np.clip(pcm, -1.0, 1.0)


def _short(e: Exception) -> str:
    if isinstance(e, av.FFmpegError) and e.strerror:
        return e.strerror.lower()
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def mix_tracks(speak: np.ndarray, listen: np.ndarray) -> np.ndarray:
    """One audible track of a conversation: both voices summed, scaled down only if they clip."""
    n = max(len(speak), len(listen))
    mix = np.zeros(n, dtype=np.float32)
    mix[: len(speak)] += speak
    mix[: len(listen)] += listen
    peak = float(np.abs(mix).max()) if n else 0.0
    return mix / peak if peak > 1.0 else mix


# --- MP4 -------------------------------------------------------------------------------------


class MP4Writer:
    """Writes H.264 (libx264, yuv420p) video plus one AAC audio track, chunk by chunk.

    The audio track is the mix of the speaking and listening tracks (`mix_tracks`): one stream
    every player plays. Use `open_mp4` so the file appears only when complete.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        height: int,
        width: int,
        fps: int = 24,
        sample_rate: int = SAMPLE_RATE,
        crf: int = 18,
    ) -> None:
        if height % 2 or width % 2:
            raise ValueError(f"yuv420p needs even frame sides, got {width}x{height}")
        self.fps, self.sample_rate = fps, sample_rate
        self.height, self.width = height, width
        self.frames_written = 0
        self.samples_written = 0
        self._container = av.open(str(path), mode="w", format="mp4")
        self._video = self._container.add_stream("libx264", rate=fps)
        self._video.width, self._video.height = width, height
        self._video.pix_fmt = "yuv420p"
        self._video.time_base = Fraction(1, fps)
        self._video.options = {"crf": str(crf), "preset": "veryfast"}
        self._audio = self._container.add_stream("aac", rate=sample_rate, layout="mono")
        self._audio.bit_rate = 64000
        self._audio.time_base = Fraction(1, sample_rate)

    def write(self, frames: np.ndarray, audio: np.ndarray | None = None) -> None:
        """Append uint8 (T, H, W, 3) frames and, optionally, the mono audio that goes with them."""
        if frames.ndim != 4 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"expected (T, {self.height}, {self.width}, 3), got {frames.shape}")
        for f in np.ascontiguousarray(frames, dtype=np.uint8):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = self.frames_written
            self._container.mux(self._video.encode(vf))
            self.frames_written += 1
        if audio is not None and len(audio):
            pcm = np.ascontiguousarray(np.clip(audio, -1, 1), dtype=np.float32)[None, :]
            af = av.AudioFrame.from_ndarray(pcm, format="flt", layout="mono")
            af.sample_rate = self.sample_rate
            af.pts = self.samples_written
            self._container.mux(self._audio.encode(af))
            self.samples_written += pcm.shape[1]

    def close(self) -> None:
        self._container.mux(self._video.encode(None))
        self._container.mux(self._audio.encode(None))
        self._container.close()

    def abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - the file is deleted anyway
            pass


@contextmanager
def open_mp4(path: str | os.PathLike, height: int, width: int, **kw) -> Iterator[MP4Writer]:
    """An `MP4Writer` on a temp file in the target folder, renamed onto `path` on success.

    On any error, or Ctrl-C, the temp file is removed: no partial output ever exists at
    `path`, and an older file there survives untouched.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    writer = None
    try:
        writer = MP4Writer(tmp, height, width, **kw)
        yield writer
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        if writer is not None:
            writer.abort()
        Path(tmp).unlink(missing_ok=True)
        raise


def probe_mp4(path: str | os.PathLike) -> dict:
    """What a file holds, decoded rather than trusted from headers: frame count, fps, size,
    and the audio streams' rates and durations."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(v))
        info = {
            "frames": n,
            "fps": float(v.average_rate) if v.average_rate else None,
            "width": v.codec_context.width,
            "height": v.codec_context.height,
            "video_codec": v.codec_context.name,
            "audio": [
                {
                    "codec": a.codec_context.name,
                    "sample_rate": a.codec_context.sample_rate,
                    "channels": a.codec_context.channels,
                    "seconds": float(a.duration * a.time_base) if a.duration else None,
                }
                for a in c.streams.audio
            ],
        }
    return info
