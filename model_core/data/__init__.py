"""Training data for LPM: the procedural performer and the four-stage curation pipeline.

- `performer/`: synthetic characters in conversation with full ground truth (`lpm data synth`).
- `curation/`: shot split -> quality + crop -> dialogue state -> captions + embeddings
  (`lpm data curate`), one module per stage, each runnable alone on one recording.
- `shards.py`: the curated shard format and `ShardDataset`, the loader (local folder or S3).
- `storage.py`: local folders and S3 buckets behind one small interface.
- `report.py`: retention, precision/recall, dialogue-state F1 (`lpm data report`).

The formats are documented in `docs/data.md`.
"""
