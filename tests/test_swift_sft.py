"""Our ms-swift files through `swift sft` itself: a few training steps of a tiny random Qwen2-VL.

ms-swift, torch, transformers, torchvision and qwen_vl_utils are not dependencies, so this runs where
an interpreter with them is named: SARCHAT_SWIFT_PYTHON=/path/to/python (CPU is enough; no download:
the checkpoint is built by tests/tiny_qwen2vl.py). Elsewhere it is skipped.
`--strict true` makes ms-swift fail on any row its preprocessor cannot read.
"""
import glob
import json
import math
import os
import subprocess

import pytest

from sarchat.beam_pipelines import generate, synth

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWIFT_PYTHON = os.environ.get("SARCHAT_SWIFT_PYTHON")


@pytest.mark.skipif(not SWIFT_PYTHON, reason="set SARCHAT_SWIFT_PYTHON to a python with ms-swift and torch")
def test_swift_sft_trains_on_every_task_file(tmp_path):
    data, gen = tmp_path / "sardet", tmp_path / "generated"
    assert synth.run([str(data), "--images", "24", "--seed", "3", "--quiet"]) == 0
    assert generate.run(["--input", str(data), "--output", str(gen), "--splits", "train",
                         "--formats", "swift"]) == 0
    files = sorted(glob.glob(str(gen / "swift" / "train" / "*.jsonl")))
    assert len(files) == 9
    env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", CUDA_VISIBLE_DEVICES="",
               HF_HOME=str(tmp_path / "hf"), MODELSCOPE_CACHE=str(tmp_path / "ms"))
    model = tmp_path / "tiny-qwen2-vl"
    subprocess.run([SWIFT_PYTHON, "-m", "tests.tiny_qwen2vl", str(model), "--dataset", str(gen)],
                   check=True, env=env, capture_output=True, timeout=600)
    out = tmp_path / "sft"
    proc = subprocess.run(
        [SWIFT_PYTHON, "-m", "swift.cli.sft", "--model", str(model), "--model_type", "qwen2_vl",
         "--template", "qwen2_vl", "--dataset", *files, "--strict", "true", "--split_dataset_ratio", "0",
         "--max_steps", "3", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "1",
         "--tuner_type", "full", "--torch_dtype", "float32", "--max_length", "2048", "--max_pixels", "200704",
         "--save_strategy", "no", "--report_to", "none", "--logging_steps", "1", "--dataloader_num_workers", "0",
         "--dataset_num_proc", "1", "--output_dir", str(out)],
        env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (log,) = glob.glob(str(out / "*" / "logging.jsonl"))
    steps = [d for d in map(json.loads, open(log)) if "loss" in d]
    assert [s["global_step/max_steps"] for s in steps] == ["1/3", "2/3", "3/3"]
    assert all(math.isfinite(s["loss"]) and s["loss"] > 0 for s in steps)
    # every row made it into the training set: an epoch is ceil(rows / batch of 2) steps
    rows = sum(1 for f in files for _ in open(f))
    assert round(3 / steps[-1]["epoch"]) == math.ceil(rows / 2)
