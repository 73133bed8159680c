"""Each stage is a function of one frozen config (docs/architecture.md, "One command-line layer"):
the command line becomes the config in one place (flags.parse_config), and the demo's configs
write themselves back as the flags a user would type (flags.command_words)."""
import dataclasses
import json
import os

import pytest

from sarchat.beam_pipelines import export, flags, generate, score, stats, synth
from tests.helpers import known_dataset, write_coco


def _round_trip(module, config):
    words = flags.command_words(config, module.build_parser())
    return flags.parse_config(module.build_parser(), words, type(config), beam=module is not synth) == config, words


@pytest.mark.parametrize("module, make", [
    (synth, lambda d: synth.SynthConfig(str(d / "o"), images=12, seed="x", test_fraction=0.5, quiet=True)),
    (generate, lambda d: generate.GenerateConfig(str(d / "i"), str(d / "o"), splits="test", formats="parquet",
                                                 seed=3, annotations=("test=a.json", "val=b.json"), no_progress=True)),
    (stats, lambda d: stats.StatsConfig(str(d / "i"), str(d / "o"), box_source="gt", plots="none")),
    (score, lambda d: score.ScoreConfig(str(d / "i"), ("p1", "p2"), str(d / "o"), adapter=("a=qwen2-vl",),
                                        bootstrap=0, no_sample_files=True)),
])
def test_a_config_written_back_as_flags_parses_to_itself(tmp_path, module, make):
    config = make(tmp_path)
    same, words = _round_trip(module, config)
    assert same, words
    assert "--no-progress" in words or not config.no_progress
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1


def test_only_the_settings_that_differ_from_their_defaults_are_written():
    config = export.ExportConfig("ds", "out", max_tokens=64)
    assert flags.command_words(config) == ["--dataset", "ds", "--output", "out", "--max-tokens", "64"]


def test_generate_returns_the_manifest_it_wrote(tmp_path):
    images, annotations = known_dataset()
    write_coco(str(tmp_path / "data"), "test", images, annotations)
    config = generate.GenerateConfig(str(tmp_path / "data"), str(tmp_path / "out"), splits="test", formats="parquet")
    manifest = generate.generate(config)
    with open(os.path.join(tmp_path / "out", "manifest.json")) as f:
        assert manifest == json.load(f)
    assert manifest["counts"]["test"]["images"] == len(images)
