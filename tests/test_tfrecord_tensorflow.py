"""Our TFRecords read by TensorFlow itself: tf.data.TFRecordDataset (which checks both CRCs) and
tf.io.parse_single_example with the README's VarLenFeature spec, field by field against Parquet.

TensorFlow is not a dependency (the writer needs none), so this runs where an interpreter with
TensorFlow is at hand: SARCHAT_TF_PYTHON=/path/to/python, or this interpreter if it has
TensorFlow. Elsewhere it is skipped; tests/test_generate_pipeline.py checks the same files with an
independent wire-format decoder in every run.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.helpers import random_dataset, read_rows, run_generate
from sarchat.transforms.generate import tfrecord

READER = r"""
import json, sys
import tensorflow as tf
folder, strings, ints = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
spec = {k: tf.io.VarLenFeature(tf.string) for k in strings}
spec.update({k: tf.io.VarLenFeature(tf.int64) for k in ints})
files = sorted(tf.io.gfile.glob(folder + "/*.tfrecord"))
ds = tf.data.TFRecordDataset(files).map(lambda x: tf.io.parse_single_example(x, spec))
out = []
for ex in ds:
    out.append({k: [v.decode("utf-8") if isinstance(v, bytes) else int(v) for v in t.values.numpy().tolist()]
                for k, t in ex.items()})
print(json.dumps({"tensorflow": tf.__version__, "files": len(files), "examples": out}))
"""


def _tf_python():
    explicit = os.environ.get("SARCHAT_TF_PYTHON")
    if explicit:
        return explicit
    if importlib.util.find_spec("tensorflow") is not None:
        return sys.executable
    return None


@pytest.mark.skipif(_tf_python() is None, reason="no TensorFlow here: set SARCHAT_TF_PYTHON to a python that has it")
def test_tensorflow_reads_every_field_as_parquet_has_it(tmp_path):
    root = tmp_path / "data"
    random_dataset(root, n_images=30, seed=8)
    out = tmp_path / "out"
    run_generate(root, out, "--formats", "parquet,tfrecord")
    strings = list(tfrecord.STR_FIELDS) + list(tfrecord.STRLIST_FIELDS) + ["messages_role", "messages_content"]
    ints = list(tfrecord.INT_FIELDS) + ["gt_boxes"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([_tf_python(), "-c", READER, str(out / "tfrecord" / "test"), json.dumps(strings),
                           json.dumps(ints)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = {r["id"]: r for r in read_rows(out)}
    assert doc["files"] >= 1 and len(doc["examples"]) == len(rows) > 20
    assert {r["task"] for r in rows.values()} == {"classify", "describe", "count", "grounding", "identify", "refer"}
    for ex in doc["examples"]:
        row = rows[ex["id"][0]]
        for name in tfrecord.STR_FIELDS:
            assert ex[name] == ([] if row[name] is None else [row[name]]), name
        for name in tfrecord.INT_FIELDS:
            assert ex[name] == ([] if row[name] is None else [row[name]]), name
        for name in tfrecord.STRLIST_FIELDS:
            assert ex[name] == row[name], name
        assert ex["gt_boxes"] == [c for box in row["gt_boxes"] for c in box]
        assert ex["messages_role"] == [m["role"] for m in row["messages"]]
        assert ex["messages_content"] == [m["content"] for m in row["messages"]]
