"""The procedural performer: synthetic characters in conversation, with full ground truth.

- `identity`: thousands of distinct characters (look + espeak-ng voice) from a seed.
- `speech`, `corpus`: real espeak-ng speech with phoneme timings and the visemes they drive.
- `script`: the behaviour script (turns, mouth, head, gaze, expressions, gestures, reactions).
- `render`, `raster`: the vectorised numpy renderer and the reference sets.
- `camera`: shots, cuts, dissolves, zooms and the planted defects.
- `recording`: one raw recording -> MP4 (video + character and partner voice) + ground truth.
- `synth`: many recordings, reference sets per identity, and the run summary.
"""
