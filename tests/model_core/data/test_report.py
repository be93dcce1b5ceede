import json

import pytest

from model_core.data.report import build_report, format_report, write_png
from model_core.data.storage import open_store


def test_report_figures(curated_dir, tmp_path):
    r = build_report(open_store(curated_dir))
    assert 0 < r["retention"] < 1 and 0.85 < r["dialogue_state_macro_f1"] <= 1
    for stage in ("shots", "quality", "dialogue", "captions"):
        assert 0 <= r["stages"][stage]["precision"] <= 1
        assert stage in r["retention_by_stage"]
    assert r["stages"]["shots"]["recall"] == 1.0
    assert len(r["confusion_matrix"]["matrix"]) == 3
    text = format_report(r)
    assert "dialogue state macro F1" in text and "retention" in text
    write_png(r, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_report_on_an_empty_folder_fails(tmp_path):
    with pytest.raises(ValueError):
        build_report(open_store(tmp_path))


def test_json_keys_via_cli(curated_dir, tmp_path):
    from model_core.cli import main

    out = tmp_path / "r.json"
    assert (
        main(
            [
                "data",
                "report",
                str(curated_dir),
                "--json",
                str(out),
                "--png",
                str(tmp_path / "f.png"),
            ]
        )
        == 0
    )
    d = json.loads(out.read_text())
    assert "dialogue_state_macro_f1" in d and "retention" in d
