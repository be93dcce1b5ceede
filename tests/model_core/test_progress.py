"""Progress off a terminal is whole lines; on a terminal it is tqdm's bar; False is silence."""

import io

from model_core.progress import progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(stream, progress, every_s=0.0, n=5):
    with progress_bar(
        n, "bench x", unit="step", progress=progress, stream=stream, every_s=every_s
    ) as bar:
        for i in range(n):
            bar.set_postfix_str(f"sample-{i}")
            bar.set_postfix(loss=i)
            bar.update(1)
    return stream.getvalue()


def test_off_a_terminal_each_update_is_one_plain_line():
    out = run(io.StringIO(), None)
    assert "\r" not in out
    lines = out.splitlines()
    assert len(lines) >= 2  # the start and at least the final state
    assert all(line.startswith("bench x:") for line in lines)
    assert "5/5" in lines[-1] and "loss=4" in lines[-1]


def test_off_a_terminal_lines_are_rate_limited():
    out = run(io.StringIO(), None, every_s=3600.0, n=50)
    # the first draw and the final one, nothing in between
    assert len(out.splitlines()) == 2


def test_on_a_terminal_it_is_the_redrawn_bar():
    out = run(FakeTerminal(), None)
    assert "\r" in out and "5/5" in out


def test_progress_false_writes_nothing_even_to_a_terminal():
    assert run(FakeTerminal(), False) == ""
    assert run(io.StringIO(), False) == ""


def test_progress_true_draws_the_bar_off_a_terminal():
    out = run(io.StringIO(), True)
    assert "\r" in out and "5/5" in out
