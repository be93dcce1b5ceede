"""`lpm train`: bad input is one line on stderr and exit 2, with nothing written."""

import pytest

from model_core.cli import main


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "bogus", "--out", "x", "--data", "synthetic"], "unknown stage 'bogus'"),
        (["train", "base", "--data", "synthetic"], "--out is required"),
        (["train", "base", "--out", "OUT", "--data", "/no/such/folder"], "no such folder"),
        (["train", "base", "--out", "OUT", "--data", "synthetic", "--steps", "0"], "--steps"),
        (["train", "base", "--out", "OUT", "--data", "synthetic", "--option", "beta"], "KEY=VALUE"),
        (["train", "base", "--preset", "huge", "--out", "OUT", "--data", "synthetic"], "preset"),
        (["train", "all"], "--work"),
        (["train", "mouth-reader", "--out", "OUT"], "--data is required"),
        (["train", "mouth-reader", "--data", "synthetic", "--out", "OUT"], "PATH.safetensors"),
        (
            ["train", "mouth-reader", "--data", "/no/such/folder", "--out", "r.safetensors"],
            "no such folder",
        ),
        (["train", "all", "--work", "OUT", "--stages", "base,nope"], "'nope'"),
        (["train", "all", "--work", "OUT", "--set", "base.lr"], "STAGE.KEY=VALUE"),
        (["train", "all", "--work", "OUT", "--set", "lr=1e-4"], "STAGE.KEY=VALUE"),
        (["train", "all", "--work", "OUT", "--set", "nope.lr=1e-4"], "unknown stage 'nope'"),
        (["train", "all", "--work", "OUT", "--set", "base.lr=-1"], "positive"),
        (["train", "all", "--work", "OUT", "--set", "base.minutes=soon"], "positive"),
        (["train", "all", "--work", "OUT", "--init", "/no/such/ckpt"], "no such checkpoint"),
        (
            ["train", "refiner", "--out", "OUT", "--data", "synthetic", "--init", "SHIPPED"]
            + ["--option", "mouth_read=1"],
            "refiner: refiner mouth_read needs mouth_reader=PATH",
        ),
        (
            ["train", "base", "--out", "OUT", "--data", "synthetic", "--init", "SHIPPED"]
            + ["--option", "mouth_latent=-1"],
            "mouth_latent must be >= 0",
        ),
        (["train", "all", "--work", "OUT", "--arch", "base_channels=24"], "SECTION.KEY=VALUE"),
        (["train", "all", "--work", "OUT", "--arch", "vae.width=24"], "unknown config field"),
        (["train", "all", "--work", "OUT", "--arch", "vae.base_channels=x"], "is not a int"),
        (
            ["train", "all", "--work", "OUT", "--arch", "vae.channel_mults=[1,3]"],
            "temporal_downsample",
        ),
        (
            ["train", "vae", "--out", "OUT", "--data", "synthetic", "--init", "ck"]
            + ["--arch", "vae.z_dim=32"],
            "brings its own",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    from model_core.bench.quality import SHIPPED_CHECKPOINT

    named = {"OUT": str(tmp_path / "out"), "SHIPPED": str(SHIPPED_CHECKPOINT)}
    argv = [named.get(a, a) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("lpm train: error: ") and message in err
    assert "\n" not in err and not (tmp_path / "out").exists()


def test_help_states_the_recipe_time_it_runs(capsys):
    """The --time-scale help names the sum of the tiny recipe's stage budgets (TINY_MINUTES,
    every stage `lpm train all` runs)."""
    from model_core.train.curriculum import TINY_MINUTES

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    recipe = sum(TINY_MINUTES.values())
    assert recipe == 166 and f"sum to {recipe:g} min" in help_text


def test_mouth_reader_is_trained_and_saved(tmp_path, capsys):
    import json

    from model_core.train.mouth_reader import LPMMouthReader

    out = tmp_path / "reader.safetensors"
    argv = ["train", "mouth-reader", "--data", "synthetic", "--out", str(out)]
    assert main([*argv, "--steps", "5", "--batch", "8", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["out"] == str(out) and summary["val_frames"] > 0 and "val_r" in summary
    assert isinstance(LPMMouthReader.load(out), LPMMouthReader)


def test_the_cli_names_the_stages_in_the_curriculum_s_order():
    """`lpm train` lists its stages without importing the objectives (torch, the model); the
    list must stay the curriculum's, in its order."""
    from model_core.cli.train import STAGE_NAMES
    from model_core.train.objectives import STAGES

    assert STAGE_NAMES == tuple(STAGES)
