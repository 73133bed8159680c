"""`sarchat synth --output OUT`: write a small synthetic SAR dataset in the SARDet-100K layout.

    sarchat synth --output OUT [--images N] [--seed S] [--test-fraction F] [--workers W] [--no-progress]
    sarchat synth --output OUT --sardet-scale [--seed S]      # annotation JSON only, SARDet-100K counts

(`sarchat synth OUT`, the output as a positional argument, is the old spelling: accepted with a
note until 0.3.0.)

OUT/Annotations/{train,test}.json (COCO detection) and OUT/JPEGImages/{train,test}/<file_name>.
The files depend only on N, S and F (never on W): the same seed gives byte-identical files.
With --sardet-scale no images are written: OUT/Annotations/{train,test}.json hold SARDet-100K-size
annotation sets (train 94,493 images / 198,747 boxes, test 11,613 / 24,023) for benchmarks.
The imaging model is described in synthetic/sardet_synth.py and synthetic/scene_render.py.
"""
import argparse
import json
import os
import sys
import time
from dataclasses import dataclass

from sarchat.beam_pipelines import flags
from sarchat.synthetic import sardet_synth as synthetic
from sarchat.synthetic.constants import MIN_TEST_IMAGES
from sarchat.transforms import progress
from sarchat.transforms.errors import UsageError


@dataclass(frozen=True)
class SynthConfig:
    """The settings of `sarchat synth`, one field per flag."""
    output: str
    images: int = synthetic.DEFAULT_IMAGES
    seed: str = "0"
    test_fraction: float = synthetic.DEFAULT_TEST_FRACTION
    workers: int = min(2, os.cpu_count() or 1)
    sardet_scale: bool = False
    quiet: bool = False
    no_progress: bool = False


_D = flags.defaults(SynthConfig)


def build_parser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(prog="sarchat synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", default=None, type=flags.output_folder("--output"),
                   help="output dataset root (created if missing)")
    p.add_renamed("OUT", "--output", positional=True, type=flags.output_folder("OUT"))
    p.require("--output")
    p.add_argument("--images", type=flags.positive_int, default=_D["images"],
                   help="total number of images, train + test (default %(default)s)")
    p.add_argument("--seed", default=_D["seed"], help="random seed, any string (default %(default)s)")
    p.add_argument("--test-fraction", type=flags.fraction, default=_D["test_fraction"],
                   help="share of images in the test split (default %(default)s; at least "
                        f"{MIN_TEST_IMAGES} test images when the set allows)")
    p.add_argument("--workers", type=flags.positive_int, default=_D["workers"],
                   help="processes rendering images (default %(default)s; output does not depend on it)")
    p.add_argument("--sardet-scale", action="store_true",
                   help="write SARDet-100K-scale annotation JSON only (no images); ignores --images")
    p.add_argument("--quiet", action="store_true", help="no summary on stdout (progress: see --no-progress)")
    flags.add_progress_flag(p)
    return p


def synth(config: SynthConfig) -> dict:
    """The synth stage: write the dataset under config.output; its summary (root, seed, images and
    boxes per split)."""
    if not 0.0 <= config.test_fraction < 1.0:
        raise UsageError(f"--test-fraction must be in [0, 1), got {config.test_fraction}")
    t0 = time.perf_counter()
    if config.sardet_scale:
        scale = {split: synthetic.SARDET_SCALE[split] for split in ("train", "test")}
        synthetic.write_annotations_only(config.output, {
            split: synthetic.sardet_scale_annotations(split, n_img, n_box, config.seed)
            for split, (n_img, n_box) in scale.items()})
        summary: dict = {"root": config.output, "seed": config.seed, "splits": {
            split: {"images": n_img, "boxes": n_box} for split, (n_img, n_box) in scale.items()}}
    else:
        with progress.Progress("sarchat synth: rendering images", config.images, "images") as shown:
            summary = synthetic.write_synthetic_dataset(
                config.output, n_images=config.images, seed=config.seed, test_fraction=config.test_fraction,
                workers=max(1, config.workers), on_image=shown.update)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary


def print_summary(config: SynthConfig, summary: dict, seconds=None):
    """What `sarchat synth` prints after the stage (nothing with --quiet); `summary` is its result."""
    if not config.quiet:
        print(json.dumps(summary, indent=2))
        # stdout stays one JSON document (scripts parse it); where the dataset is goes to stderr
        print(f"sarchat synth: dataset in {config.output} (Annotations/train.json, Annotations/test.json"
              + (")" if config.sardet_scale else ", JPEGImages/)"), file=sys.stderr)


def run(argv=None) -> int:
    config = flags.parse_config(build_parser(), argv, SynthConfig)
    print_summary(config, synth(config))
    return 0


if __name__ == "__main__":
    sys.exit(run())
