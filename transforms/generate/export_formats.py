"""The output formats of `sarchat generate` and their options: plain constants, no Beam import, so
the command line can list them in `--help` without loading the pipeline (transforms/generate/pipeline.py
builds the formats named here)."""

FORMATS = ("parquet", "tfrecord", "swift", "authors")
DEFAULT_FORMATS = ("parquet", "tfrecord", "swift")
TFRECORD_COMPRESSIONS = ("none", "gzip")
