"""SARDet-100K-scale generation benchmark: the floor, the wall, the ratio, and a scale sweep.

Builds annotations at the paper's scale (train 94,493 images / 198,747 boxes, test 11,613 / 24,023,
Table 1 category mix; no image files: the generator never opens images), then, in each run:
  - `sarchat generate` (Beam FnApiRunner, 2 worker processes), Parquet only, then all three
    formats (parquet,tfrecord,swift);
  - the floor: what no generator can avoid, json.loads of the inputs plus a zstd Parquet rewrite of
    the rows that run generated (a fresh process that loads the generated table untimed, then
    times the two steps).
Ratios (wall / floor, all formats / Parquet only) are taken within one run, then the median over
--repeats runs is printed. Peak memory is the largest resident set of any one process of the
command's tree (the launcher or a worker), sampled every 0.1 s.
The scale sweep (--scale 0.25,0.5,1,2,4) runs Parquet only on 2 workers at each multiple of the
SARDet size: wall, seconds per 1x (flat: time linear in the input), and the peak of the launcher
(the `sarchat generate` process: the pre-flight) and of the largest worker process (flat: memory
that does not grow with the input), medians of --sweep-repeats runs. --repeats 0 runs the sweep
only; the code measured is the `sarchat` that PYTHONPATH resolves (so an older checkout can be
swept in the same sitting).

    python benchmarks/generate_scale.py [--repeats 3] [--scale 0.25,0.5,1,2,4] [--sweep-repeats 1]
                                        [--workdir /tmp/sarchat-bench]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _measure  # noqa: E402

SCALE = {"train": (94_493, 198_747), "test": (11_613, 24_023)}
TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]

FLOOR = r"""
import io, json, sys, time
import pyarrow as pa, pyarrow.parquet as pq
from sarchat.transforms.dataset_files import read_manifest, split_parquet_files
root, out = sys.argv[1], sys.argv[2]
manifest = read_manifest(out)
paths = [p for split in ("train", "test") for p in split_parquet_files(out, split, manifest=manifest)]
table = pa.concat_tables([pq.read_table(p) for p in paths]).combine_chunks()  # untimed
start = time.perf_counter()
for split in ("train", "test"):
    with open(f"{root}/Annotations/{split}.json", "rb") as f:
        json.loads(f.read())
buf = io.BytesIO()
pq.write_table(table, buf, compression="zstd")
print(json.dumps({"floor_s": time.perf_counter() - start, "rows": table.num_rows, "bytes": len(buf.getvalue())}))
"""


def measure(cmd, interval=0.1):
    """(wall s, peak RSS MiB of the largest single process in the tree, output)."""
    wall, peaks, out = measure_roles(cmd, interval)
    return wall, max(peaks.values()), out


def measure_roles(cmd, interval=0.1, env=None):
    """(wall s, {"launcher": peak MiB of the command's own process, "worker": peak MiB of the
    largest of its descendants (the Beam worker processes)}, output)."""
    import threading
    import time

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peaks, done = {}, threading.Event()

    def sample():
        while not done.is_set():
            for pid in _measure._tree_pids(proc.pid):
                peaks[pid] = max(peaks.get(pid, 0), _measure.rss_kib(pid))
            done.wait(interval)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}")
    workers = [kib for pid, kib in peaks.items() if pid != proc.pid]
    return wall, {"launcher": peaks.get(proc.pid, 0) / 1024.0, "worker": max(workers, default=0) / 1024.0}, out


def build_annotations(root, scale=1.0):
    from sarchat.synthetic.sardet_synth import sardet_scale_annotations, write_annotations_only

    splits = {split: sardet_scale_annotations(split, round(n_images * scale), round(n_boxes * scale), seed=0)
              for split, (n_images, n_boxes) in SCALE.items()}
    write_annotations_only(root, splits)


def dataset(work, scale):
    root = os.path.join(work, f"sardet_x{scale:g}")
    if not os.path.exists(os.path.join(root, "Annotations", "test.json")):
        build_annotations(root, scale)
    return root


def generate_cmd(root, out, formats, extra=()):
    shutil.rmtree(out, ignore_errors=True)
    return [sys.executable, "-m", "sarchat.beam_pipelines.cli", "generate", "--input", root, "--output", out,
            "--formats", formats, *TWO_WORKERS, *extra]


def generate(root, out, formats, extra=()):
    return measure(generate_cmd(root, out, formats, extra))


def input_mib(root):
    return sum(os.path.getsize(os.path.join(root, "Annotations", f"{s}.json")) for s in SCALE) / 2**20


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="runs of the floor/Parquet/all-formats comparison (0 skips it)")
    p.add_argument("--scale", default="0.25,0.5,1,2,4", help="multiples of SARDet for the sweep ('' skips it)")
    p.add_argument("--compare-scale", type=float, default=1.0,
                   help="the multiple of SARDet the floor/Parquet/all-formats comparison runs at (default 1)")
    p.add_argument("--parquet-only", action="store_true", help="leave the all-formats run out of the comparison")
    p.add_argument("--sweep-repeats", type=int, default=1)
    p.add_argument("--baseline", default=None, metavar="CHECKOUT",
                   help="also sweep the sarchat of this checkout (its PYTHONPATH), alternating run by run "
                        "with this one, and print the ratios (default: none)")
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    work = args.workdir or tempfile.mkdtemp(prefix="sarchat-bench-")
    out = os.path.join(work, "out")
    if args.repeats > 0:
        compare(work, out, args.repeats, args.compare_scale, not args.parquet_only)
    sweep(work, out, [float(s) for s in args.scale.split(",") if s.strip()], args.sweep_repeats, args.baseline)
    shutil.rmtree(out, ignore_errors=True)


def compare(work, out, repeats, scale=1.0, all_formats=True):
    root = dataset(work, scale)
    runs = []
    for r in range(repeats):
        pq_wall, pq_peak, _ = generate(root, out, "parquet")
        floor = json.loads(subprocess.run([sys.executable, "-c", FLOOR, root, out], check=True,
                                          capture_output=True, text=True).stdout.strip().splitlines()[-1])
        all_wall, all_peak = generate(root, out, "parquet,tfrecord,swift")[:2] if all_formats else (float("nan"), 0)
        runs.append({"floor": floor["floor_s"], "rows": floor["rows"], "parquet": pq_wall, "parquet_peak": pq_peak,
                     "all": all_wall, "all_peak": all_peak})
        x = runs[-1]
        print(f"run {r + 1}/{repeats}: floor {x['floor']:.1f}s, parquet {x['parquet']:.1f}s "
              f"({x['parquet'] / x['floor']:.2f}x), peak {x['parquet_peak']:.0f} MiB"
              + (f", all formats {x['all']:.1f}s ({x['all'] / x['parquet']:.2f}x parquet)" if all_formats else ""),
              flush=True)
    med = lambda key: statistics.median(run[key] for run in runs)  # noqa: E731
    ratio = lambda a, b: statistics.median(run[a] / run[b] for run in runs)  # noqa: E731
    rows = runs[0]["rows"]
    print(f"\n{scale:g}x SARDet, {rows:,} dialogues; 2 worker processes; medians of {repeats} runs; "
          f"{os.cpu_count()} cores")
    print(f"{'configuration':<44} {'wall s':>7} {'dialogues/s':>12} {'peak MiB/proc':>14} {'ratio':>22}")
    print(f"{'floor: json.loads + zstd Parquet rewrite':<44} {med('floor'):>7.1f} {rows / med('floor'):>12,.0f} {'':>14} {'1.00 (floor)':>22}")
    print(f"{'generate, Parquet only':<44} {med('parquet'):>7.1f} {rows / med('parquet'):>12,.0f} "
          f"{med('parquet_peak'):>14.0f} {ratio('parquet', 'floor'):>11.2f} x floor")
    if all_formats:
        print(f"{'generate, parquet,tfrecord,swift':<44} {med('all'):>7.1f} {rows / med('all'):>12,.0f} "
              f"{med('all_peak'):>14.0f} {ratio('all', 'parquet'):>11.2f} x parquet")


def sweep(work, out, scales, repeats, baseline=None):
    """Parquet only on 2 workers at each multiple of SARDet: wall, seconds per 1x (flat = linear
    time), and the peak of the launcher and of the largest worker (flat = memory independent of
    the input), medians of `repeats` runs. With `baseline` (a checkout), each run of this code is
    followed by one of the baseline's, and the ratios (this / baseline) are medians of run pairs."""
    if not scales:
        return
    codes = [("this", None)] + ([("baseline", baseline)] if baseline else [])
    print(f"\nscale sweep, Parquet only, 2 workers, medians of {repeats} run(s)"
          + (f"; baseline: {baseline}" if baseline else ""), flush=True)
    print(f"{'code':>8} {'scale':>6} {'input MiB':>10} {'images':>10} {'dialogues':>11} {'wall s':>8} {'s per 1x':>9} "
          f"{'launcher MiB':>13} {'worker MiB':>11}", flush=True)
    for scale in scales:
        sroot = dataset(work, scale)
        runs = {name: [] for name, _ in codes}
        for _ in range(repeats):
            for name, checkout in codes:
                env = None
                if checkout:
                    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout))
                wall, peaks, _ = measure_roles(generate_cmd(sroot, out, "parquet"), env=env)
                runs[name].append((wall, peaks["launcher"], peaks["worker"]))
                if name == "this":
                    with open(os.path.join(out, "manifest.json")) as f:
                        counts = json.load(f)["counts"]
        images = sum(c["images"] for c in counts.values())
        dialogues = sum(c["dialogues"] for c in counts.values())
        for name, _ in codes:
            wall, launcher, worker = (statistics.median(r[k] for r in runs[name]) for k in range(3))
            print(f"{name:>8} {scale:>6g} {input_mib(sroot):>10.1f} {images:>10,} {dialogues:>11,} {wall:>8.1f} "
                  f"{wall / scale:>9.1f} {launcher:>13.0f} {worker:>11.0f}"
                  + (f"   (walls {', '.join(f'{r[0]:.1f}' for r in runs[name])})" if repeats > 1 else ""), flush=True)
        if baseline:
            ratio = lambda k: statistics.median(a[k] / b[k] for a, b in zip(runs["this"], runs["baseline"]))  # noqa: E731, B023 (called at once)
            print(f"{'ratio':>8} {scale:>6g} {'':>10} {'':>10} {'':>11} {ratio(0):>8.2f} {'':>9} {ratio(1):>13.2f} "
                  f"{ratio(2):>11.2f}", flush=True)


if __name__ == "__main__":
    main()
