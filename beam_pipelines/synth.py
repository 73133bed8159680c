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

from sarchat.beam_pipelines import flags
from sarchat.synthetic import sardet_synth as synthetic
from sarchat.synthetic.constants import MIN_TEST_IMAGES
from sarchat.transforms import progress
from sarchat.transforms.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    p = flags.ArgumentParser(prog="sarchat synth", description=__doc__.split("\n\n")[0])
    p.add_argument("--output", dest="out", default=None, type=flags.output_folder("--output"),
                   help="output dataset root (created if missing)")
    p.add_renamed("OUT", "--output", positional=True, type=flags.output_folder("OUT"),
                  help="deprecated: old spelling of --output (removed in 0.3.0)")
    p.require("--output")
    p.add_argument("--images", type=flags.positive_int, default=synthetic.DEFAULT_IMAGES,
                   help="total number of images, train + test (default %(default)s)")
    p.add_argument("--seed", default="0", help="random seed, any string (default %(default)s)")
    p.add_argument("--test-fraction", type=flags.fraction, default=synthetic.DEFAULT_TEST_FRACTION,
                   help="share of images in the test split (default %(default)s; at least "
                        f"{MIN_TEST_IMAGES} test images when the set allows)")
    p.add_argument("--workers", type=flags.positive_int, default=min(2, os.cpu_count() or 1),
                   help="processes rendering images (default %(default)s; output does not depend on it)")
    p.add_argument("--sardet-scale", action="store_true",
                   help="write SARDet-100K-scale annotation JSON only (no images); ignores --images")
    p.add_argument("--quiet", action="store_true", help="no summary on stdout (progress: see --no-progress)")
    flags.add_progress_flag(p)
    return p


def run(argv=None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    flags.apply_progress_flag(args)
    if not 0.0 <= args.test_fraction < 1.0:
        raise UsageError(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    t0 = time.perf_counter()
    if args.sardet_scale:
        splits = {}
        summary = {"root": args.out, "seed": args.seed, "splits": {}}
        for split in ("train", "test"):
            n_img, n_box = synthetic.SARDET_SCALE[split]
            splits[split] = synthetic.sardet_scale_annotations(split, n_img, n_box, args.seed)
            summary["splits"][split] = {"images": n_img, "boxes": n_box}
        synthetic.write_annotations_only(args.out, splits)
    else:
        with progress.Progress("sarchat synth: rendering images", args.images, "images") as shown:
            summary = synthetic.write_synthetic_dataset(
                args.out, n_images=args.images, seed=args.seed, test_fraction=args.test_fraction,
                workers=max(1, args.workers), on_image=shown.update)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    if not args.quiet:
        print(json.dumps(summary, indent=2))
        # stdout stays one JSON document (scripts parse it); where the dataset is goes to stderr
        print(f"sarchat synth: dataset in {args.out} (Annotations/train.json, Annotations/test.json"
              + (")" if args.sardet_scale else ", JPEGImages/)"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run())
