"""The scripted-line corpus: hand-written lines plus template combinations, each tagged.

Lines whose index is `6 mod 7` are held-out speech, kept out of training recordings so the
bench can test on sentences the model never heard.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

HELD_OUT_EVERY = 7


@dataclass(frozen=True)
class Line:
    index: int
    text: str
    mood: str  # "positive" | "neutral" | "negative" | "surprising"
    question: bool

    @property
    def split(self) -> str:
        return "heldout" if self.index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else "train"


_BASE = [
    ("Hello there, it is good to see you.", "positive"),
    ("Hi! How have you been lately?", "positive"),
    ("I was not expecting that at all.", "surprising"),
    ("That sounds wonderful, tell me more.", "positive"),
    ("Hmm, let me think about that for a moment.", "neutral"),
    ("I am not sure I agree with you.", "negative"),
    ("Could you say that again, please?", "neutral"),
    ("We should meet again next week.", "neutral"),
    ("Honestly, that was the best day of my life.", "positive"),
    ("I am really sorry to hear that.", "negative"),
    ("Wait, what did you just say?", "surprising"),
    ("The weather has been strange this year.", "neutral"),
    ("Let me show you how it works.", "neutral"),
    ("That is hilarious, I love it!", "positive"),
    ("Why would anyone do something like that?", "negative"),
    ("Right, so first we open the box, then we check the parts.", "neutral"),
    ("You will never believe what happened this morning.", "surprising"),
    ("I think the answer is somewhere over there.", "neutral"),
    ("It makes me a little sad, to be honest.", "negative"),
    ("Thank you so much for your help today.", "positive"),
    ("Okay. Yes. I see what you mean.", "neutral"),
    ("No, no, that is not what I meant.", "negative"),
    ("Do you want to try it yourself?", "positive"),
    ("This is the part where it gets interesting.", "surprising"),
    ("Well, it depends on how you look at it.", "neutral"),
    ("I have been waiting for this all year.", "positive"),
    ("Please be careful with that, it is fragile.", "neutral"),
    ("Are you serious? That is amazing!", "surprising"),
    ("I lost my keys again, can you believe it?", "negative"),
    ("Let us take a short break and come back later.", "neutral"),
]

_SUBJECTS = [
    "my sister",
    "the new teacher",
    "our neighbour",
    "a friend of mine",
    "the manager",
    "my grandfather",
    "the little dog",
    "that old man",
]
_VERBS = [
    ("finally fixed", "positive"),
    ("accidentally broke", "negative"),
    ("painted", "neutral"),
    ("found", "surprising"),
    ("sold", "neutral"),
    ("lost", "negative"),
    ("built", "positive"),
]
_OBJECTS = [
    "the bicycle",
    "a tiny boat",
    "the kitchen table",
    "an old guitar",
    "the garden gate",
    "a red umbrella",
    "the blue car",
    "a huge cake",
]
_QUESTIONS = ["Did you know that {s} {v} {o}?", "Have you heard that {s} {v} {o}?"]
_STATEMENTS = [
    "Yesterday {s} {v} {o}.",
    "I heard that {s} {v} {o} last night.",
    "So, {s} {v} {o}, and nobody noticed.",
]


@lru_cache(maxsize=1)
def corpus() -> tuple[Line, ...]:
    """All lines, in a fixed order (a few hundred distinct sentences)."""
    rows: list[tuple[str, str]] = list(_BASE)
    for i, (s, (v, mood), o) in enumerate(itertools.product(_SUBJECTS, _VERBS, _OBJECTS)):
        templates = _QUESTIONS + _STATEMENTS
        rows.append((templates[i % len(templates)].format(s=s, v=v, o=o).capitalize(), mood))
    return tuple(Line(i, t, m, t.rstrip().endswith("?")) for i, (t, m) in enumerate(rows))


def lines_for(split: str) -> tuple[Line, ...]:
    """Lines of one split: "train", "heldout" or "all"."""
    if split == "all":
        return corpus()
    return tuple(line for line in corpus() if line.split == split)
