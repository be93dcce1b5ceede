"""Progress for long commands, on a terminal and off one.

`progress_bar(..., progress=None)` draws tqdm's bar when stderr is a terminal. Off a terminal
(a background run writing to a log, a CI job) tqdm would either stay silent or fill the log with
carriage returns; here it prints a plain line instead, at most every `every_s` seconds:

    lpm bench quality:  12%|#2        | 57/475 [02:41<19:40,  2.83s/step, sample-0056 online]

`progress=True` forces the bar, `progress=False` turns all of it off.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm import tqdm


class LineWriter:
    """A file for tqdm that turns each redraw into one whole line (no carriage returns)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class LineBar(tqdm):
    """tqdm whose postfix changes wait for the next timed redraw (they redraw at once in
    tqdm, which off a terminal would be one line per sample)."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s="", refresh=True):
        super().set_postfix_str(s, refresh=False)


def progress_bar(
    total: int,
    desc: str,
    unit: str = "it",
    progress: bool | None = None,
    stream: IO[str] | None = None,
    every_s: float = 30.0,
    **kw: Any,
):
    """A tqdm bar for `total` units of work; see the module docstring for `progress`."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    on_terminal = bool(isatty and isatty())
    if progress is False:
        return tqdm(total=total, desc=desc, unit=unit, disable=True, **kw)
    if progress is None and not on_terminal:
        return LineBar(
            total=total,
            desc=desc,
            unit=unit,
            file=LineWriter(stream),
            mininterval=every_s,
            maxinterval=every_s,  # tqdm's monitor thread would otherwise redraw every 10 s
            ascii=True,
            ncols=100,
            **kw,
        )
    return tqdm(total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True, **kw)
