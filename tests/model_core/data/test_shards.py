"""The loader round-trips shards from a folder and from the S3 server the suite starts."""

import json

import numpy as np
import pytest

from model_core.data.curation.pipeline import CurationInputError, curate
from model_core.data.shards import ClipSample, ShardDataset, build_shard, read_shard
from model_core.data.storage import StoreError, open_store


def _sample(key: str, frames: int = 9) -> ClipSample:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return ClipSample(
        key=key,
        frames=np.repeat(img[None], frames, 0),
        character=rng.uniform(-0.5, 0.5, frames * 16000 // 24).astype(np.float32),
        partner=np.zeros(frames * 16000 // 24, np.float32),
        refs={"global": img, "body": np.stack([img] * 4), "face": np.stack([img] * 8)},
        embedding=np.ones(384, np.float32) / np.sqrt(384),
        meta={"key": key, "fps": 24, "caption": "a test", "split": "train"},
    )


def test_shard_round_trip_in_memory():
    data = build_shard([_sample("a_0000"), _sample("a_0001")])
    assert data == build_shard([_sample("a_0000"), _sample("a_0001")])  # deterministic bytes
    out = list(read_shard(data))
    assert [s["key"] for s in out] == ["a_0000", "a_0001"]
    s = out[0]
    assert s["frames"].shape == (9, 64, 64, 3) and s["frames"].dtype == np.uint8
    assert s["refs"]["body"].shape == (4, 64, 64, 3) and s["refs"]["face"].shape == (8, 64, 64, 3)
    np.testing.assert_allclose(s["character"], _sample("x").character, atol=1e-4)
    assert s["meta"]["caption"] == "a test" and s["embedding"].shape == (384,)


def test_dataset_reads_a_curated_folder(curated_dir):
    ds = ShardDataset(str(curated_dir))
    samples = list(ds)
    assert len(samples) == len(ds) > 0
    s = samples[0]
    n = s["frames"].shape[0]
    assert s["frames"].shape[1:] == (128, 128, 3)
    assert len(s["character"]) == len(s["partner"]) == round(n * 16000 / 24)
    assert s["meta"]["state"] in ("speaking", "listening", "silent")
    assert (
        len(s["meta"]["gt"]["mouth_open"]) == n and abs(np.linalg.norm(s["embedding"]) - 1) < 1e-4
    )
    assert s["refs"]["body"].shape == (4, 128, 128, 3) and s["refs"]["face"].any()


@pytest.mark.services
def test_dataset_reads_s3_and_curate_writes_s3(s3_server, curated_dir, synth_dir):
    client = s3_server.client()
    bucket = s3_server.make_bucket("shards")
    store = open_store(f"s3://{bucket}/curated", client=client)
    for key in open_store(curated_dir).list():
        store.put(key, (curated_dir / key).read_bytes())
    local = [s["key"] for s in ShardDataset(str(curated_dir), decode_video=False)]
    remote = list(ShardDataset(f"s3://{bucket}/curated", s3_client=client))
    assert [s["key"] for s in remote] == local and remote[0]["frames"].ndim == 4
    # curate straight into S3, and a re-run resumes (skips) there too.
    res = curate(str(synth_dir), f"s3://{bucket}/direct", s3_client=client)
    assert not res.errors and res.processed
    again = curate(str(synth_dir), f"s3://{bucket}/direct", s3_client=client)
    assert again.skipped == res.processed
    index = json.loads(open_store(f"s3://{bucket}/direct", client=client).get("index.json"))
    assert index["clips"] == len(local)


@pytest.mark.services
def test_missing_bucket_is_a_clear_error(s3_server, synth_dir):
    with pytest.raises(StoreError, match="does not exist"):
        open_store("s3://no-such-bucket-lpm/x", client=s3_server.client())
    with pytest.raises(CurationInputError, match="no-such-bucket-lpm"):
        curate(str(synth_dir), "s3://no-such-bucket-lpm/x", s3_client=s3_server.client())
