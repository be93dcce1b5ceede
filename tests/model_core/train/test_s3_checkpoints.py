"""Checkpoints to `s3://bucket/prefix`: written, resumed from, fetched and loaded."""

import pytest

from model_core.pipeline import LPMPipeline
from model_core.train.checkpoints import fetch_checkpoint
from model_core.train.config import TrainConfig
from model_core.train.loop import Trainer

pytestmark = pytest.mark.services


def test_train_to_s3_resume_and_load(
    s3_server, monkeypatch, tmp_path, micro_cfg, micro_source, micro_cache
):
    monkeypatch.setenv("LPM_S3_ENDPOINT", s3_server.endpoint)
    monkeypatch.setenv("LPM_S3_ACCESS_KEY", s3_server.access_key)
    monkeypatch.setenv("LPM_S3_SECRET_KEY", s3_server.secret_key)
    bucket = s3_server.make_bucket("train")
    url = f"s3://{bucket}/runs/base"

    def trainer(steps, resume):
        tc = TrainConfig(
            stage="base",
            out=url,
            steps=steps,
            checkpoint_every=1,
            progress=False,
            resume=resume,
            work_dir=str(tmp_path / "work"),
        )
        return Trainer(tc, micro_cfg, source=micro_source, cache=micro_cache)

    trainer(2, False).run()
    t = trainer(3, True)
    assert t.resumed_from == "step-00000002"
    summary = t.run()
    assert summary["final"] == f"{url}/final" and summary["steps"] == 3
    names = {o.object_name for o in s3_server.client().list_objects(bucket, recursive=True)}
    assert "runs/base/final/model.safetensors" in names and "runs/base/log.jsonl" in names
    assert "runs/base/step-00000001/trainer.pt" not in names  # pruned: keep the last two
    pipe = LPMPipeline.load(fetch_checkpoint(summary["final"], tmp_path / "fetched"))
    assert pipe.config.name == "micro"
