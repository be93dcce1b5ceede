"""One raw recording: script + camera plan -> rendered frames -> MP4 + ground truth.

Files written for a recording `NAME`:
- `NAME.mp4`: H.264 video and two mono AAC tracks at 16 kHz, stream order character voice
  (title "character") then partner voice (title "partner").
- `NAME.gt.jsonl`: one JSON object per frame (see `docs/data.md`).
- `NAME.meta.json`: identity, voices, turns, shots, events and the audio layout.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from model_core.data.performer.camera import (
    apply_visual_defect,
    make_background,
    make_empty_scene,
    plan_setups,
    plan_shots,
    shot_camera,
)
from model_core.data.performer.identity import CharacterIdentity, VoiceSpec
from model_core.data.performer.render import CharacterRenderer, Pose, face_params
from model_core.data.performer.script import Script, build_script
from model_core.data.performer.speech import SAMPLE_RATE, EspeakSynth

AUDIO_TRACKS = ("character", "partner")


@dataclass
class RecordingStats:
    name: str
    frames: int
    render_s: float
    encode_s: float
    script_s: float
    cpu_s: float  # process CPU time for the whole recording (unaffected by other load)


def _r(x: float, nd: int = 3) -> float:
    return round(float(x), nd)


def script_pose(script: Script, f: int, body_yaw: float) -> Pose:
    """The renderer's pose at frame f of a behaviour script, seen from body_yaw."""
    c = script.controls
    return Pose(
        body_yaw=body_yaw,
        yaw=float(c["yaw"][f]),
        pitch=float(c["pitch"][f]),
        roll=float(c["roll"][f]),
        sway_x=float(c["sway_x"][f]),
        breath=float(c["breath"][f]),
        mouth_open=float(c["mouth_open"][f]),
        mouth_round=float(c["mouth_round"][f]),
        expression=script.expression[f],
        intensity=float(c["intensity"][f]),
        brow_raise=float(c["brow_raise"][f]),
        smile_extra=float(c["smile_extra"][f]),
        blink=float(c["blink"][f]),
        gaze_x=float(c["gaze_x"][f]),
        gaze_y=float(c["gaze_y"][f]),
        gesture=script.gesture[f],
        gesture_amount=float(c["gesture_amount"][f]),
        gesture_phase=float(c["gesture_phase"][f]),
        beat=float(c["beat"][f]),
    )


def render_recording(
    name: str,
    out_dir: Path,
    identity: CharacterIdentity,
    partner: VoiceSpec,
    seconds: float,
    seed: int,
    synth: EspeakSynth,
    size: int = 128,
    fps: int = 24,
    speech_split: str = "train",
    crf: int = 20,
) -> RecordingStats:
    """Render one recording into `out_dir`; files appear atomically (temp name, then rename)."""
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    script = build_script(identity, partner, seconds, seed, synth, fps, speech_split)
    rng = np.random.default_rng([seed, identity.index, 0xCA])
    setups = plan_setups(rng)
    shots = plan_shots(rng, script.frames, fps, setups)
    _plant_audio_mismatch(script, shots, fps)
    script_s = time.perf_counter() - t0

    renderer = CharacterRenderer(identity, size, size)
    backgrounds = {i: make_background(s.background, size) for i, s in enumerate(setups)}
    empty = {i: make_empty_scene(s.background, size) for i, s in enumerate(setups)}
    shot_of = np.zeros(script.frames, np.int32)
    for sh in shots:
        shot_of[sh.start : sh.end] = sh.index

    def draw(sh, f, pose):
        setup = setups[sh.setup]
        if sh.defect == "nosubject":
            return empty[sh.setup].copy(), None, None
        cam = shot_camera(sh, setup, f, size)
        img = renderer.render(pose, cam, backgrounds[sh.setup]).copy()
        img = apply_visual_defect(img, sh.defect, sh.defect_strength, rng)
        return img, renderer.subject_box(cam), renderer.face_box(cam)

    tmp_mp4 = out_dir / f".{name}.mp4.part"
    gt_lines: list[str] = []
    render_s = encode_s = 0.0
    with _Mp4Writer(tmp_mp4, size, fps, crf) as writer:
        for f in range(script.frames):
            ta = time.perf_counter()
            sh = shots[shot_of[f]]
            setup = setups[sh.setup]
            pose = script_pose(script, f, setup.body_yaw)
            img, box, face = draw(sh, f, pose)
            transition = None
            if f == sh.start and sh.transition == "cut":
                transition = "cut"
            if sh.transition == "dissolve" and f < sh.start + sh.transition_frames:
                prev = shots[sh.index - 1]
                pose_prev = script_pose(script, f, setups[prev.setup].body_yaw)
                img_prev, _, _ = draw(prev, f, pose_prev)
                a = (f - sh.start + 1) / (sh.transition_frames + 1)
                img = img_prev * (1 - a) + img * a
                transition = "dissolve"
            u8 = np.clip(img + 0.5, 0, 255).astype(np.uint8)
            tb = time.perf_counter()
            writer.add_frame(u8)
            tc = time.perf_counter()
            render_s += tb - ta
            encode_s += tc - tb
            fp = face_params(pose)
            gt_lines.append(
                json.dumps(
                    {
                        "frame": f,
                        "shot": int(sh.index),
                        "transition": transition,
                        "defects": [sh.defect] if sh.defect else [],
                        "state": script.state[f],
                        "visible": box is not None,
                        "mouth_open": _r(fp.mouth_open),
                        "mouth_round": _r(fp.mouth_round),
                        "expression": script.expression[f] if fp else "neutral",
                        "expression_intensity": _r(pose.intensity),
                        "head_pose": [
                            _r(pose.body_yaw + pose.yaw, 2),
                            _r(pose.pitch, 2),
                            _r(pose.roll, 2),
                        ],
                        "body_yaw": _r(setup.body_yaw, 1),
                        "gaze": [_r(fp.gaze_x), _r(fp.gaze_y)],
                        "blink": _r(pose.blink),
                        "gesture": script.gesture[f],
                        "reaction": script.reaction[f],
                        "subject_box": box,
                        "face_box": face,
                    },
                    separators=(",", ":"),
                )
            )
        tb = time.perf_counter()
        writer.add_audio([script.character_audio, script.partner_audio])
        encode_s += time.perf_counter() - tb

    meta = {
        "name": name,
        "fps": fps,
        "size": size,
        "frames": script.frames,
        "seconds": seconds,
        "seed": seed,
        "speech_split": speech_split,
        "identity": identity.to_dict(),
        "partner_voice": partner.__dict__,
        "audio_tracks": list(AUDIO_TRACKS),
        "sample_rate": SAMPLE_RATE,
        "setups": [s.__dict__ for s in setups],
        "shots": [s.to_dict() for s in shots],
        "turns": [t.to_dict() for t in script.turns],
        "events": [e.to_dict() for e in script.events],
    }
    _write_atomic(out_dir / f"{name}.gt.jsonl", "\n".join(gt_lines) + "\n")
    _write_atomic(out_dir / f"{name}.meta.json", json.dumps(meta, indent=1))
    tmp_mp4.replace(out_dir / f"{name}.mp4")
    return RecordingStats(
        name, script.frames, render_s, encode_s, script_s, time.process_time() - cpu0
    )


def _plant_audio_mismatch(script: Script, shots, fps: int) -> None:
    """Swap the two voice tracks inside `audio_mismatch` shots; a shot with under a second of
    speech cannot show the mismatch, so it loses the label."""
    for sh in shots:
        if sh.defect != "audio_mismatch":
            continue
        talk = sum(1 for s in script.state[sh.start : sh.end] if s != "silent")
        if talk < fps:
            sh.defect = None
            continue
        a, b = sh.start * SAMPLE_RATE // fps, sh.end * SAMPLE_RATE // fps
        c, p = script.character_audio, script.partner_audio
        c[a:b], p[a:b] = p[a:b].copy(), c[a:b].copy()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text)
    tmp.replace(path)


class _Mp4Writer:
    """H.264 video plus two mono AAC tracks (character, partner) in one MP4."""

    def __init__(self, path: Path, size: int, fps: int, crf: int):
        self.c = av.open(str(path), "w", format="mp4")
        self.v = self.c.add_stream("libx264", rate=fps)
        self.v.width = self.v.height = size
        self.v.pix_fmt = "yuv420p"
        self.v.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        self.a = []
        for title in AUDIO_TRACKS:
            s = self.c.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
            s.metadata["title"] = title
            s.metadata["handler_name"] = title
            self.a.append(s)

    def add_frame(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for pkt in self.v.encode(frame):
            self.c.mux(pkt)

    def add_audio(self, tracks: list[np.ndarray]) -> None:
        for stream, pcm in zip(self.a, tracks):
            data = np.ascontiguousarray(np.clip(pcm, -1, 1), dtype=np.float32)
            hop = 1024
            for i in range(0, len(data), hop):
                chunk = data[i : i + hop][None, :]
                fr = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                fr.sample_rate = SAMPLE_RATE
                fr.pts = i
                for pkt in stream.encode(fr):
                    self.c.mux(pkt)
            for pkt in stream.encode(None):
                self.c.mux(pkt)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            for pkt in self.v.encode(None):
                self.c.mux(pkt)
        self.c.close()
