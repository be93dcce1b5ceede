"""The paper's four curation stages, one module each, each runnable alone on one recording:

1. `shots.extract_shots`: cuts and gradual transitions -> single shots.
2. `quality.filter_quality`: drop blurred / noisy / over-compressed / subject-less / off-frame /
   too-short shots; one square crop per kept shot.
3. `dialogue.recognize_dialogue`: speaking / listening / silent per frame from both voice tracks
   (silero-vad) checked against mouth activity; drop mismatched audio; cut clips at changes.
4. `captions`: caption + MiniLM embedding + reference set per clip (written by `pipeline`).

`pipeline.curate` runs them over a folder or S3 prefix, resumably; `evaluate` scores each
stage against the performer's ground truth. Each stage function returns a JSON manifest of
what it kept and why it dropped the rest.
"""
