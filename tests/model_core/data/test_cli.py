"""`lpm data` bad input: one line on stderr, exit 2, no partial output."""

import pytest

from model_core.cli import main


@pytest.mark.parametrize(
    "argv, message",
    [
        (["synth", "--minutes", "0", "-o", "{tmp}/o"], "--minutes must be positive"),
        (["synth", "--minutes", "1", "--size", "100", "-o", "{tmp}/o"], "--size"),
        (["curate", "{tmp}/missing", "{tmp}/o"], "is not a folder"),
        (["curate", "{tmp}/empty", "{tmp}/o"], "no recordings"),
        (["report", "{tmp}/empty"], "no curation manifests"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(["data", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lpm data ") and message in err[0]
    assert not (tmp_path / "o").exists()


def test_curate_reports_bad_files_and_exits_1(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.mp4").write_bytes(b"garbage")
    assert main(["data", "curate", str(tmp_path / "in"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "lpm data curate: error:" in err and "broken.mp4" in err
