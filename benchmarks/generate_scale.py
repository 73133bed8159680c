"""SARDet-100K-scale generation benchmark.

Builds annotations at the paper's scale (train 94,493 images / 198,747 boxes, test 11,613 / 24,023,
Table 1 category mix; no image files: the generator never opens images), then measures:
  - `sarchat generate` (Beam, FnApiRunner, 2 worker processes), Parquet only and all formats;
  - the floor: the same pure functions (parse_coco, build_shard, rows_to_table) in a plain
    in-process loop writing one Parquet file.
Prints wall time, dialogues per second, peak memory of the whole process tree, and the ratio
Beam / floor measured in the same run. Medians over --repeats runs.

    python benchmarks/generate_scale.py [--repeats 3] [--workdir /tmp/sarchat-bench] [--formats-all]
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._measure import measure  # noqa: E402

SCALE = {"train": (94_493, 198_747), "test": (11_613, 24_023)}

FLOOR = r"""
import io, json, sys, time
import pyarrow.parquet as pq
from sarchat.transforms import coco
from sarchat.transforms.generate import records
from sarchat.transforms.generate.dialogues import DialogueBuilder, build_shard
from sarchat.transforms.schema import DIALOGUE_SCHEMA
root, out = sys.argv[1], sys.argv[2]
builder = DialogueBuilder(seed=0)
n = 0
with pq.ParquetWriter(out, DIALOGUE_SCHEMA, compression="zstd") as writer:
    for split in ("train", "test"):
        path = f"{root}/Annotations/{split}.json"
        images, _ = coco.parse_coco(coco.load_json(open(path, "rb").read(), path), path, split, f"JPEGImages/{split}")
        for i in range(0, len(images), 4000):
            rows, _ = build_shard(builder, images[i:i + 4000])
            writer.write_table(records.rows_to_table(rows))
            n += len(rows)
print(json.dumps({"dialogues": n}))
"""


def build_annotations(root):
    from sarchat.synthetic.sardet_synth import sardet_scale_annotations, write_annotations_only

    splits = {split: sardet_scale_annotations(split, n_images, n_boxes, seed=0)
              for split, (n_images, n_boxes) in SCALE.items()}
    write_annotations_only(root, splits)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workdir", default=None)
    p.add_argument("--formats-all", action="store_true", help="also time parquet,tfrecord,swift")
    args = p.parse_args(argv)
    work = args.workdir or tempfile.mkdtemp(prefix="sarchat-bench-")
    root = os.path.join(work, "sardet_scale")
    if not os.path.exists(os.path.join(root, "Annotations", "test.json")):
        build_annotations(root)
    py = sys.executable
    configs = [("beam 2 workers, parquet", ["parquet", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]),
               ("beam in-process, parquet", ["parquet"])]
    if args.formats_all:
        configs.append(("beam 2 workers, all formats",
                        ["parquet,tfrecord,swift", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]))
    results = {name: [] for name, _ in configs}
    results["floor (plain loop, one Parquet file)"] = []
    dialogues = None
    for r in range(args.repeats):
        floor_out = os.path.join(work, "floor.parquet")
        wall, peak, out = measure([py, "-c", FLOOR, root, floor_out])
        dialogues = json.loads(out.strip().splitlines()[-1])["dialogues"]
        results["floor (plain loop, one Parquet file)"].append((wall, peak))
        for name, (formats, *beam_flags) in configs:
            out_dir = os.path.join(work, f"out_{r}")
            cmd = [py, "-m", "sarchat.beam_pipelines.cli", "generate", "--input", root, "--output", out_dir,
                   "--formats", formats, *beam_flags]
            wall, peak, _ = measure(cmd)
            results[name].append((wall, peak))
        print(f"run {r + 1}/{args.repeats}: " + ", ".join(f"{k}: {v[-1][0]:.1f}s" for k, v in results.items()), flush=True)
    floor = statistics.median(w for w, _ in results["floor (plain loop, one Parquet file)"])
    print(f"\n{dialogues:,} dialogues; medians of {args.repeats} runs; machine: {os.cpu_count()} cores")
    print(f"{'configuration':<40} {'wall s':>8} {'dialogues/s':>12} {'peak MiB':>9} {'/ floor':>8}")
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        peak = statistics.median(m for _, m in runs)
        print(f"{name:<40} {wall:>8.1f} {dialogues / wall:>12,.0f} {peak:>9.0f} {wall / floor:>8.2f}")


if __name__ == "__main__":
    main()
