"""Throughput of `sarchat infer --backend cfar` on the synthetic test split (CPU only).

    python benchmarks/infer_cfar.py [--images 200] [--runs 5] [--dataset GENERATED_OUT]
                                    [--io-workers N] [--batch-size B]

Without --dataset it writes a `sarchat synth` dataset (sarchat.synthetic.sardet_synth) and runs
`sarchat generate` on it (test split only) in a temporary folder. Each run infers the whole split
into a fresh output folder (reading Parquet, CFAR on every image, answers, fsync'd store, merge)
and the median samples/s over the runs is printed, with the same figure per image.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def build_dataset(workdir, n_images, seed):
    from sarchat.synthetic.sardet_synth import write_synthetic_dataset
    from sarchat.beam_pipelines import generate

    root, gen = os.path.join(workdir, "root"), os.path.join(workdir, "gen")
    # test_fraction 1.0 would leave train empty; the generator only reads the test split here
    write_synthetic_dataset(root, n_images=n_images, seed=seed, test_fraction=0.5)
    generate.run(["--input", root, "--output", gen, "--splits", "test", "--formats", "parquet"])
    return gen


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=200, help="synthetic images in all (half are test)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default=None, help="an existing `sarchat generate` output")
    p.add_argument("--split", default="test")
    p.add_argument("--io-workers", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    args = p.parse_args(argv)

    from sarchat.inference.dataset import load_rows
    from sarchat.inference.run import execute, parse_config

    with tempfile.TemporaryDirectory(prefix="infer_cfar_") as workdir:
        dataset = args.dataset or build_dataset(workdir, args.images, args.seed)
        rows = load_rows(dataset, args.split)
        n_images = len({r["image_path"] for r in rows})
        rates = []
        for k in range(args.runs):
            out = os.path.join(workdir, f"run{k}")
            flags = ["--dataset", dataset, "--split", args.split, "--backend", "cfar", "--output", out,
                     "--no-progress"]
            if args.io_workers:
                flags += ["--io-workers", str(args.io_workers)]
            if args.batch_size:
                flags += ["--batch-size", str(args.batch_size)]
            cfg = parse_config(flags)
            t0 = time.perf_counter()
            execute(cfg)
            rates.append(len(rows) / (time.perf_counter() - t0))
        med = statistics.median(rates)
        print(f"cfar backend: {len(rows)} dialogues on {n_images} images ({args.split}), {args.runs} runs, "
              f"{os.cpu_count()} CPUs")
        print(f"  samples/s: median {med:.1f} (min {min(rates):.1f}, max {max(rates):.1f})")
        print(f"  images/s:  median {med * n_images / len(rows):.1f}")


if __name__ == "__main__":
    main()
