"""Helpers shared by the tests (tests import this module, never each other's test modules)."""
import os

from sarchat.beam_pipelines import generate, synth


def generated_dataset(tmp_path, images=30, seed="0", extra=()):
    """`sarchat synth` + `sarchat generate` (all formats) into tmp_path; returns the output folder."""
    data, out = os.path.join(str(tmp_path), "data"), os.path.join(str(tmp_path), "out")
    assert synth.run([data, "--images", str(images), "--seed", str(seed), "--quiet"]) in (0, None)
    assert generate.run(["--input", data, "--output", out, *extra]) in (0, None)
    return out
