"""OUT/README.md, the Hugging Face dataset card: `load_dataset(OUT)` gives the Parquet rows with every
column (not the swift files), per split; the card's counts and file lists come from the manifest."""
import json
import os

import pytest

from sarchat.transforms.generate.dataset_card import render_card
from sarchat.transforms.schema import DIALOGUE_SCHEMA
from tests.helpers import generated_dataset


def _manifest(out):
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


def test_card_lists_exactly_the_manifest_files(tmp_path):
    out = generated_dataset(tmp_path)
    manifest = _manifest(out)
    card = render_card(manifest)
    front = card.split("---")[1]
    listed = [line.strip()[2:].strip('"') for line in front.splitlines() if line.strip().startswith('- "')]
    expected = sorted(f["path"] for f in manifest["files"] if f["path"].startswith("parquet/"))
    assert sorted(listed) == expected
    assert "config_name: default" in front and "default: true" in front
    assert 'load_dataset("json", data_files={"train": "swift/train/*.jsonl", "test": "swift/test/*.jsonl"})' in card
    for field in DIALOGUE_SCHEMA.names:
        assert f"| `{field}` |" in card
    test = manifest["counts"]["test"]
    assert f"| test | {test['images']} | {test['boxes']} | {test['dialogues']} |" in card


def test_generate_writes_the_card(tmp_path):
    out = generated_dataset(tmp_path)
    with open(os.path.join(out, "README.md"), encoding="utf-8") as f:
        assert f.read() == render_card(_manifest(out))
    assert any(f["path"] == "README.md" for f in _manifest(out)["files"])


def test_load_dataset_returns_the_parquet_rows_with_every_column(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = generated_dataset(tmp_path)
    ds = datasets.load_dataset(out)
    manifest = _manifest(out)
    assert set(ds) == {"train", "test"}
    for split in ("train", "test"):
        assert ds[split].column_names == DIALOGUE_SCHEMA.names
        assert ds[split].num_rows == manifest["counts"][split]["dialogues"]
    # the card's own line for the swift files
    swift = datasets.load_dataset("json", data_files={s: os.path.join(out, "swift", s, "*.jsonl") for s in ("train", "test")})
    assert set(swift["test"].column_names) == {"messages", "images"}
    assert swift["test"].num_rows == manifest["counts"]["test"]["dialogues"]
