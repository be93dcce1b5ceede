"""Draw held-out characters beside their twins (`twin_identity`), the identity judge's hard
negatives: per row, the global portraits of the character, its face twin and its palette
twin, then their neutral faces.

    .venv/bin/python scripts/judge-twins.py docs/bench/experiments/judge_twins.png --rows 4
"""

import argparse

import numpy as np
from PIL import Image

from model_core.bench.judges_train import heldout_identity_indices
from model_core.data.performer.identity import TWIN_KINDS, sample_identity, twin_identity
from model_core.data.performer.render import reference_set


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="PNG to write")
    p.add_argument("--rows", type=int, default=4)
    args = p.parse_args()
    if args.rows < 1:
        p.error("--rows must be >= 1")
    rows = []
    for index in heldout_identity_indices(args.rows):
        a = sample_identity(index)
        looks = [reference_set(x, 128) for x in (a, *(twin_identity(a, k) for k in TWIN_KINDS))]
        rows.append(
            np.concatenate([r["global"] for r in looks] + [r["face/neutral"] for r in looks], 1)
        )
    grid = np.concatenate(rows, 0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(
        args.out
    )
    print(f"wrote {args.out}: per row character, face twin, palette twin (portraits, then faces)")


if __name__ == "__main__":
    main()
