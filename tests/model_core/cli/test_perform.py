"""`lpm perform`: bad input fails fast with one line and exit 2; a real run makes a valid MP4."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_core.cli import main
from model_core.media import probe_mp4

from .runner import LPM, REPO, SAMPLE, run_lpm

SPEAK = SAMPLE / "speak.wav"


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    files = {
        "text": d / "notes.png",
        "corrupt": d / "corrupt.png",
        "bomb": d / "bomb.png",
        "tiny": d / "tiny.png",
        "gif": d / "anim.gif",
        "not_audio": d / "speech.wav",
        "image_as_wav": d / "photo.wav",
    }
    files["text"].write_text("this is not a picture")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        files["corrupt"]
    )
    files["corrupt"].write_bytes(files["corrupt"].read_bytes()[:300])
    Image.new("1", (10000, 10000)).save(files["bomb"])  # 100 MP in ~15 KB
    Image.new("RGB", (12, 12)).save(files["tiny"])
    Image.new("RGB", (64, 64)).save(files["gif"])
    files["not_audio"].write_text("RIFF....WAVEfmt but really just text " * 10)
    Image.new("RGB", (64, 64)).save(files["image_as_wav"], format="PNG")
    return files


G, S = "--ref-global", "--speak"
CASES = {
    # name: (argv builder, expected fragment of the one-line message)
    "non-image file": (lambda f, p: [G, f["text"], S, SPEAK], "not an image"),
    "unreadable image": (lambda f, p: [G, f["corrupt"], S, SPEAK], "unreadable image"),
    "image too large": (lambda f, p: [G, f["bomb"], S, SPEAK], "image too large (10000x10000"),
    "image too small": (lambda f, p: [G, f["tiny"], S, SPEAK], "image too small"),
    "unsupported format": (lambda f, p: [G, f["gif"], S, SPEAK], "unsupported image format GIF"),
    "missing image": (lambda f, p: [G, "nope.png", S, SPEAK], "no such file"),
    "wav not audio": (lambda f, p: [G, p, S, f["not_audio"]], "not readable as audio"),
    "image as wav": (lambda f, p: [G, p, S, f["image_as_wav"]], "photo.wav: not"),
    "listen not audio": (
        lambda f, p: [G, p, S, SPEAK, "--listen", f["not_audio"]],
        "not readable as audio",
    ),
    "unknown view": (lambda f, p: [G, p, S, SPEAK, "--ref-body", f"top={p}"], "unknown view 'top'"),
    "unknown expression": (
        lambda f, p: [G, p, S, SPEAK, "--ref-face", f"smirk={p}"],
        "unknown expression 'smirk'",
    ),
    "malformed label": (
        lambda f, p: [G, p, S, SPEAK, "--ref-body", str(p)],
        "expected LABEL=IMAGE",
    ),
    "repeated label": (
        lambda f, p: [G, p, S, SPEAK, "--ref-face", f"smile={p}", "--ref-face", f"smile={p}"],
        "'smile' given more than once",
    ),
    "5 body refs": (
        lambda f, p: [G, p, S, SPEAK, *sum((["--ref-body", f"front={p}"] for _ in range(5)), [])],
        "at most 4 body references, got 5",
    ),
    "9 face refs": (
        lambda f, p: [G, p, S, SPEAK, *sum((["--ref-face", f"smile={p}"] for _ in range(9)), [])],
        "at most 8 face references, got 9",
    ),
    "seconds 0": (lambda f, p: [G, p, S, SPEAK, "--seconds", "0"], "--seconds must be a positive"),
    "seconds negative": (
        lambda f, p: [G, p, S, SPEAK, "--seconds", "-3"],
        "--seconds must be a positive",
    ),
    "seconds nan": (
        lambda f, p: [G, p, S, SPEAK, "--seconds", "nan"],
        "--seconds must be a positive",
    ),
    "seconds not a number": (lambda f, p: [G, p, S, SPEAK, "--seconds", "ten"], "invalid float"),
    "missing speak": (lambda f, p: [G, p], "required: --speak"),
    "unknown preset": (lambda f, p: [G, p, S, SPEAK, "--preset", "huge"], "unknown preset 'huge'"),
    "bad checkpoint": (
        lambda f, p: [G, p, S, SPEAK, "--checkpoint", f["text"]],
        "not a checkpoint",
    ),
}


# Each of these runs as a real subprocess; the rest of CASES in-process through the same
# `main` (status and stderr identical, without paying interpreter start-up per case).
SUBPROCESS_CASES = (
    "non-image file",
    "image too large",
    "wav not audio",
    "5 body refs",
    "seconds 0",
)


def _run_in_process(argv: list, capsys) -> tuple[int, str]:
    try:
        status = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors exit from inside parse_args
        status = e.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_no_output(tmp_path, portrait, bad_files, case, capsys):
    build, fragment = CASES[case]
    out_dir = tmp_path / "out"
    argv = ["perform", *build(bad_files, portrait), "-o", out_dir / "clip.mp4"]
    if case in SUBPROCESS_CASES:
        res = run_lpm(*argv)
        status, err = res.returncode, res.stderr
    else:
        status, err = _run_in_process(argv, capsys)
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lpm perform: error: ") and fragment in lines[0], lines[0]
    assert not out_dir.exists()  # nothing written, not even the folder


def test_output_must_be_an_mp4_file(tmp_path, portrait, capsys):
    status, err = _run_in_process(
        ["perform", G, portrait, S, SPEAK, "-o", tmp_path / "a.avi"], capsys
    )
    assert status == 2 and "must end in .mp4" in err
    status, err = _run_in_process(["perform", G, portrait, S, SPEAK, "-o", tmp_path], capsys)
    assert status == 2 and "must end in .mp4" in err
    assert list(tmp_path.iterdir()) == [portrait]


def _wav(path: Path, seconds: float, rate: int, channels: int) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    data = (np.repeat(x[:, None], channels, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path


def test_three_second_performance_is_a_72_frame_mp4_with_audio(tmp_path, portrait):
    # 2.3 s of speech at 22.05 kHz rounds up to 3 s; the listen track is 44.1 kHz stereo.
    speak = _wav(tmp_path / "speak.wav", 2.3, 22050, 1)
    listen = _wav(tmp_path / "listen.wav", 1.0, 44100, 2)
    out, stats = tmp_path / "out" / "clip.mp4", tmp_path / "stats.json"
    res = run_lpm(
        "perform",
        G,
        portrait,
        S,
        speak,
        "--listen",
        listen,
        "--ref-body",
        f"front={SAMPLE / 'body_front.png'}",
        "--ref-face",
        f"smile={SAMPLE / 'face_smile.png'}",
        "--text",
        "a calm host",
        "-o",
        out,
        "--stats-json",
        stats,
    )
    assert res.returncode == 0, res.stderr
    info = probe_mp4(out)
    assert info["frames"] == 72 and info["fps"] == 24.0
    assert (info["width"], info["height"]) == (128, 128)
    assert len(info["audio"]) == 1 and info["audio"][0]["codec"] == "aac"
    assert abs(info["audio"][0]["seconds"] - 3.0) < 0.1
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.mp4"]  # no temp file left
    s = json.loads(stats.read_text())
    assert s["frames"] == 72 and s["chunks"] == 3 and len(s["per_chunk"]) == 3
    # the shipped model has a mouth painter, timed as its own stage
    assert set(s["rtf_per_stage"]) == {"audio", "backbone", "refiner", "vae", "painter"}
    assert "wrote" in res.stdout and "72 frames" in res.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_no_partial_file(tmp_path, portrait, sig):
    out = tmp_path / "out" / "long.mp4"
    env_cmd = [*LPM, "perform", G, str(portrait), S, str(SPEAK), "--seconds", "600", "-o", str(out)]
    proc = subprocess.Popen(
        env_cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # Wait until the MP4 is being written (its temp file exists), then interrupt. The
        # deadline is generous: on a loaded machine the first chunk can take a while.
        deadline = time.time() + 240
        while time.time() < deadline and not list(out.parent.glob(".long.mp4.*")):
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        assert list(out.parent.glob(".long.mp4.*")), "the writer never started"
        time.sleep(0.5)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # never leave a 600-second render running behind a failure
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "lpm perform: interrupted" in err
    assert list(out.parent.iterdir()) == []


def test_lpm_entry_point_reports_errors_the_same_way(tmp_path, portrait):
    """The `lpm` console script (services/cli.py) mounts the same registrar."""
    args = [
        "perform",
        G,
        str(portrait),
        S,
        str(SPEAK),
        "--seconds",
        "0",
        "-o",
        str(tmp_path / "a.mp4"),
    ]
    via_lpm = subprocess.run(
        [sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, cwd=REPO
    )
    direct = run_lpm(*args)
    assert via_lpm.returncode == direct.returncode == 2
    assert (
        via_lpm.stderr
        == direct.stderr
        == ("lpm perform: error: --seconds must be a positive number, got 0\n")
    )
