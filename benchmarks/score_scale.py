"""Scale benchmark of `sarchat score`: blind predictions on a SARDet-scale synthetic test split.

    python benchmarks/score_scale.py [--rows 226636] [--workdir DIR] [--bootstrap 1000] [--repeats 3] [--profile]

1. builds 226,636 test dialogues (the paper's test-set size) with the generator's own per-image
   builder on SARDet-100K-scale synthetic annotations (--builder generator, the default), or with
   the stand-in builder of this file and the paper's exact task mix (--builder simple: identify
   175,565, count 11,704, refer 11,703, grounding 11,608, classify 10,024, describe 6,032), and
   writes them in the generator's Parquet layout (DIR/dataset/parquet/test/*.parquet);
2. fits sarchat.inference.baselines.BlindPrior on a synthetic train split and writes its predictions;
3. runs `sarchat score` in a child process and prints its wall time and the peak resident memory
   of its process tree (benchmarks/_measure.py), the median of --repeats runs;
4. with --profile, runs the scorer's DoFns in this process under cProfile (no Beam runner) and
   prints the time of each stage (profile_stages): what dominates.

`make_rows` is the one function that decides where the test rows come from; everything else
only needs a table of sarchat.transforms.schema.DIALOGUE_SCHEMA.
"""
import argparse
import collections
import json
import os
import random
import re
import resource
import sys
import tempfile
import time
import zlib

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sarchat.transforms import geometry  # noqa: E402
from sarchat.transforms.categories import CATEGORIES, CATEGORY_INDEX, article, join_words, plural  # noqa: E402
from sarchat.transforms.schema import DIALOGUE_SCHEMA, PREDICTION_SCHEMA, dialogue_id, join_relation  # noqa: E402

# The paper's test task counts (appendix A.3, Figure 9).
PAPER_TEST_TASKS = {"identify": 175565, "count": 11704, "refer": 11703, "grounding": 11608,
                    "classify": 10024, "describe": 6032}
CATEGORY_WEIGHTS = (0.44, 0.28, 0.05, 0.07, 0.13, 0.03)  # roughly the paper's test category mix
IMAGE_SIZES = ((256, 256), (512, 512), (800, 800), (600, 400))


# ---------------------------------------------------------------------------------------------
# A simple builder following docs/rules.md section 7 (stand-in for the generator)


def _synth_image(rng, image_id, max_boxes=6):
    W, H = rng.choice(IMAGE_SIZES)
    n = min(max_boxes, 1 + int(rng.expovariate(0.8)))
    boxes = []
    for k in range(n):
        cat = rng.choices(CATEGORIES, weights=CATEGORY_WEIGHTS)[0]
        w = max(4, int(W * rng.uniform(0.04, 0.45)))
        h = max(4, int(H * rng.uniform(0.04, 0.45)))
        x1, y1 = rng.randrange(0, W - w), rng.randrange(0, H - h)
        boxes.append({"ann": k, "cat": cat, "xyxy": [x1, y1, x1 + w, y1 + h]})
    return W, H, boxes


def _row(split, image_id, task, subset, unit, variant, W, H, question, answer, **gt):
    did = dialogue_id(split, image_id, task, subset, unit, variant)
    row = {"id": did, "split": split, "task": task, "subset": subset, "image_path": f"JPEGImages/{split}/{image_id}.png",
           "image_id": image_id, "width": W, "height": H, "question": question, "answer": answer,
           "messages": [{"role": "user", "content": "<image>\n" + question}, {"role": "assistant", "content": answer}],
           "template_id": f"{task}-synthetic"}
    for f in ("gt_boxes", "gt_categories", "gt_cells", "gt_sizes", "gt_shapes", "gt_relations"):
        row[f] = gt.get(f, [])
    row["gt_count"] = gt.get("gt_count", 0)
    return row


def synth_task_row(rng, task, image_id, split="test"):
    """One dialogue of `task` for a fresh random image, answer in the grammar of docs/rules.md section 7."""
    W, H, boxes = _synth_image(rng, image_id)
    bt = geometry.box_text
    cell = lambda b: geometry.grid_cell(b["xyxy"], W, H)  # noqa: E731
    ratio = lambda b: ((b["xyxy"][2] - b["xyxy"][0]) * (b["xyxy"][3] - b["xyxy"][1])) / (W * H)  # noqa: E731
    by_cat = {}
    for b in boxes:
        by_cat.setdefault(b["cat"], []).append(b)
    cats = sorted(by_cat, key=CATEGORY_INDEX.__getitem__)
    if task == "classify":
        return _row(split, image_id, task, None, "", 0, W, H, "What kind of targets are in this SAR image?",
                    f"The image contains {join_words(cats)}.", gt_categories=cats, gt_count=len(cats))
    if task == "describe":
        kept = sorted(boxes, key=lambda b: CATEGORY_INDEX[b["cat"]])
        sizes = [geometry.describe_size(ratio(b)) for b in kept]
        phrases = []
        for i, (b, s) in enumerate(zip(kept, sizes)):
            lead = "a" if i == 0 else "there is one more"
            verb = " is visible" if i == 0 else ""
            phrases.append(f"{lead} {s} {b['cat']}{verb} {geometry.POSITION_PHRASES[cell(b)]}")
        answer = ". ".join(phrases) + "."
        return _row(split, image_id, task, None, "", 0, W, H, "Describe this SAR image in detail.",
                    answer[0].upper() + answer[1:], gt_boxes=[b["xyxy"] for b in kept],
                    gt_categories=[b["cat"] for b in kept], gt_cells=[cell(b) for b in kept], gt_sizes=sizes,
                    gt_count=len(kept))
    if task in ("count", "refer"):
        cat = rng.choice(cats)
        group = by_cat[cat]
        n = len(group)
        if task == "count":
            lead = "There is 1 instance. " if n == 1 else f"There are {n} instances. "
            return _row(split, image_id, task, None, cat, 0, W, H, f"[count] How many {plural(cat)} are there in the image?",
                        lead + "".join(bt(b["xyxy"]) for b in group), gt_boxes=[b["xyxy"] for b in group],
                        gt_categories=[cat] * n, gt_cells=[cell(b) for b in group], gt_count=n)
        subset = "single" if n == 1 else "multi"
        return _row(split, image_id, task, subset, cat, 0, W, H, f"[refer] Where is the {cat}?",
                    "".join(f"{bt(b['xyxy'])} ({cell(b)})" for b in group), gt_boxes=[b["xyxy"] for b in group],
                    gt_categories=[cat] * n, gt_cells=[cell(b) for b in group], gt_count=n)
    if task == "grounding":
        subset = "single" if len(boxes) == 1 else "multi"
        sentences, ordered, rels = [], [], []
        for cat in cats:
            group = by_cat[cat]
            ordered.extend(group)
            if len(group) == 1:
                sentences.append(f"There is {article(cat)} {cat} in the {cell(group[0])} portion {bt(group[0]['xyxy'])}.")
            else:
                parts = ", ".join(f"one in the {cell(b)} portion {bt(b['xyxy'])}" for b in group)
                sentences.append(f"There are {len(group)} {plural(cat)}: {parts}.")
        for i, a in enumerate(cats):
            for c in cats[i + 1:]:
                rel, direction = geometry.relation([x["xyxy"] for x in by_cat[a]], [x["xyxy"] for x in by_cat[c]], W, H)
                tail = f", {direction} it" if direction else ""
                sentences.append(f"The {a} is {rel} the {c}{tail}.")
                rels.append(join_relation(a, rel, c, direction))
        answer = "In this SAR image, I can identify several objects and their locations: " + " ".join(sentences)
        return _row(split, image_id, task, subset, "", 0, W, H,
                    "[grounding] Can you describe the spatial arrangement of various features in this SAR image?",
                    answer, gt_boxes=[b["xyxy"] for b in ordered], gt_categories=[b["cat"] for b in ordered],
                    gt_cells=[cell(b) for b in ordered], gt_relations=rels, gt_count=len(ordered))
    if task == "identify":
        b = rng.choice(boxes)
        subset = "single" if len(boxes) == 1 else "multi"
        x1, y1, x2, y2 = b["xyxy"]
        size = geometry.identify_size(ratio(b))
        shape = geometry.shape_word((x2 - x1) / (y2 - y1))
        states_shape = rng.random() < 0.5
        answer = f"This is {article(size)} {size} {b['cat']} located in the {cell(b)} portion of the image."
        if states_shape:
            answer += f" It appears to be {shape} in shape."
        return _row(split, image_id, task, subset, b["ann"], 0, W, H, f"[identify] What object is located in {bt(b['xyxy'])}?",
                    answer, gt_boxes=[b["xyxy"]], gt_categories=[b["cat"]], gt_cells=[cell(b)], gt_sizes=[size],
                    gt_shapes=[shape] if states_shape else [], gt_count=1)
    raise ValueError(task)


def synth_rows(task_counts, seed=0, split="test"):
    """Rows for {task: n} (each from its own random image), in a fixed order for a given seed."""
    rng = random.Random(seed)
    rows, image_id = [], 0
    for task in sorted(task_counts):
        for _ in range(task_counts[task]):
            rows.append(synth_task_row(rng, task, image_id, split))
            image_id += 1
    return rows


def _scaled(counts, n_rows):
    total = sum(counts.values())
    return {t: max(1, round(n * n_rows / total)) for t, n in counts.items()}


def simple_rows(n_rows, seed=0, split="test"):
    """The stand-in builder above with the paper's test task mix (exact counts at full scale)."""
    counts = dict(PAPER_TEST_TASKS) if n_rows == sum(PAPER_TEST_TASKS.values()) else _scaled(PAPER_TEST_TASKS, n_rows)
    rows = synth_rows(counts, seed=seed, split=split)
    return pa.Table.from_pylist(rows, schema=DIALOGUE_SCHEMA)


def generator_rows(n_rows, seed=0, split="test"):
    """The generator's own dialogues (sarchat.transforms.generate.dialogues.DialogueBuilder, as `sarchat generate`
    builds them) for SARDet-100K-scale synthetic annotations (sarchat.synthetic.sardet_synth), grown until
    there are at least n_rows and trimmed to exactly n_rows in id order. The SARDet test split
    (11,613 images, 24,023 boxes) gives 222,962 dialogues; the paper's test set has 226,636."""
    from sarchat.transforms import coco
    from sarchat.synthetic import sardet_synth as synthetic
    from sarchat.transforms.generate.dialogues import DialogueBuilder

    builder = DialogueBuilder(seed=0)
    images_per_row = 11_613 / 222_962.0
    boxes_per_image = 24_023 / 11_613.0
    factor = 1.0
    while True:
        n_images = max(1, int(round(n_rows * images_per_row * factor)))
        n_boxes = max(n_images, int(round(n_images * boxes_per_image)))
        data = synthetic.sardet_scale_annotations(split, n_images, n_boxes, seed)
        images, _ = coco.parse_coco(data, f"synthetic/{split}.json", split, f"JPEGImages/{split}")
        table, _ = builder.table(images)
        if table.num_rows >= n_rows:
            return table.slice(0, n_rows)  # rows are sorted by id
        factor *= 1.02 * n_rows / max(1, table.num_rows)


def make_rows(n_rows, split="test", seed=0, builder="generator"):
    """THE SWAP POINT: a pa.Table of n_rows dialogues of a split (DIALOGUE_SCHEMA). 'generator' uses
    the generator's builder on synthetic SARDet-scale annotations; 'simple' the stand-in
    builder of this file (used automatically when the generator's modules are not importable)."""
    if builder == "generator":
        try:
            return generator_rows(n_rows, seed, split)
        except ImportError:
            pass
    return simple_rows(n_rows, seed, split)


# ---------------------------------------------------------------------------------------------
# A realistic mix of answers: right, boxes a few pixels off, wrong, unparseable

_CANONICAL_BOX = re.compile(r"\{<(-?\d+)><(-?\d+)><(-?\d+)><(-?\d+)>\}")


def _nudged(answer, k):
    """The answer with every canonical box moved by a few pixels (deterministic in k)."""
    def move(m):
        return "{" + "".join(f"<{max(0, int(v) + (k + i) % 7 - 3)}>" for i, v in enumerate(m.groups())) + "}"
    return _CANONICAL_BOX.sub(move, answer)


def mix_predictions(rows):
    """Per test row (id order), by crc32 of its id: 40% the reference answer, 25% the reference with
    its boxes a few pixels off, 20% the answer of another sample of the same task (wrong), 15% an
    unparseable sentence."""
    last = {}
    out = []
    for r in rows:
        k = zlib.crc32(r["id"].encode("utf-8")) % 100
        if k < 40:
            text = r["answer"]
        elif k < 65:
            text = _nudged(r["answer"], k)
        elif k < 85:
            text = last.get(r["task"], "I cannot tell.")
        else:
            text = "I am not sure what this image shows."
        last[r["task"]] = r["answer"]
        out.append(text)
    return out


# ---------------------------------------------------------------------------------------------
# What dominates: the scorer's DoFns run in this process, outside Beam, under cProfile

# (stage, function of the scorer whose cumulative time the stage is); the stages nest inside
# ScoreBucketFn.process except the two readers.
PROFILE_STAGES = (
    ("read test shards into id buckets (ReadDialogueFileFn)", "pipeline.py", "process", "ReadDialogueFileFn"),
    ("read predictions into id buckets (ReadPredictionFileFn)", "pipeline.py", "process", "ReadPredictionFileFn"),
    ("score buckets, all of it (ScoreBucketFn.process)", "pipeline.py", "process", "ScoreBucketFn"),
    ("  join on id (score_columns.BucketJoin)", "score_columns.py", "__init__", "BucketJoin"),
    ("  answer parsing, distinct answers (ParseMemo)", "parsing.py", "__call__", None),
    ("  scoring over columns (score_columns.score_task)", "score_columns.py", "score_task", None),
    ("  samples/*.parquet rows (ModelTask.sample_table, concat)", "score_columns.py",
     ("sample_table", "model_sample_table"), "ModelTask"),
    ("  samples/*.parquet writing (pyarrow.parquet.write_table)", "core.py", "write_table", None),
    ("  samples_<task>.jsonl lines (ModelTask.lines)", "score_columns.py", "lines", "ModelTask"),
    ("  TaskArrays for the combiners (TaskScores.task_arrays)", "score_columns.py", "task_arrays", None),
)


def profile_stages(dataset_dir, pred_files, out_dir, num_buckets=64):
    """Run the scorer's reading and bucket scoring DoFns in this process (no Beam runner) under
    cProfile; return [(stage, seconds)] and the profiled total. The wall time of `sarchat score`
    minus these stages is what Beam (runner, coders, shuffles), imports and the report take."""
    import cProfile
    import pstats
    from sarchat.transforms.score import pipeline as P
    from sarchat.transforms.score.score_inputs import plan_score_inputs

    inputs = plan_score_inputs(dataset_dir, "test", pred_files)
    groups = collections.defaultdict(lambda: {"d": [], "p": []})
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    read_tests = P.ReadDialogueFileFn("test", num_buckets, 2, columns=P.DIALOGUE_COLUMNS + ("question", "answer"))
    for path in inputs.test_files:
        for tag, e in read_tests.process(path):
            if tag == read_tests.ROWS:
                groups[e[0]]["d"].append(e[1])
    read_preds = P.ReadPredictionFileFn(num_buckets, {})
    for f in inputs.prediction_files:
        for tag, e in read_preds.process(f.path):
            if tag == read_preds.ROWS:
                groups[e[0]]["p"].append(e[1])
    score = P.ScoreBucketFn(out_dir, inputs.formats, num_buckets, inputs.models)
    score.setup()
    for bucket in sorted(groups):
        for _ in score.process((bucket, groups[bucket]), shown=()):
            pass
    prof.disable()
    total = time.perf_counter() - t0
    stats = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}
    rows = []
    for label, filename, names, owner in PROFILE_STAGES:
        names = (names,) if isinstance(names, str) else names
        cum = 0.0
        for (file, line, name), (_, _, _, ct, _) in stats.items():
            if file.endswith(filename) and name in names:
                if owner is not None and owner not in _defining_class(file, line):
                    continue
                cum += ct
        rows.append((label, cum))
    return rows, total


def _defining_class(path, line):
    """The name of the class whose body holds `line` of `path` (the DoFns share a method name)."""
    with open(path) as f:
        lines = f.readlines()[:line]
    for text in reversed(lines):
        if text.startswith("class "):
            return text.split()[1].split("(")[0]
    return ""


def write_dataset(table, out_dir, shards=4):
    """Write a DIALOGUE_SCHEMA table as the generator's layout OUT/parquet/test/*.parquet, with the
    manifest.json listing the shards and their sizes (score reads the files the manifest lists)."""
    if isinstance(table, list):
        table = pa.Table.from_pylist(table, schema=DIALOGUE_SCHEMA)
    folder = os.path.join(out_dir, "parquet", "test")
    os.makedirs(folder, exist_ok=True)
    table = table.sort_by("id")
    per = (table.num_rows + shards - 1) // shards
    files = []
    for k in range(shards):
        name = f"dialogues-{k:05d}-of-{shards:05d}.parquet"
        pq.write_table(table.slice(k * per, per), os.path.join(folder, name))
        files.append({"path": f"parquet/test/{name}", "rows": min(per, max(0, table.num_rows - k * per)),
                      "bytes": os.path.getsize(os.path.join(folder, name))})
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump({"generator": "benchmarks/score_scale.py", "config_hash": "score-scale", "files": files}, f, indent=1)


def build_inputs(args, work, models, pred_files):
    """The test split (DIR/dataset) and one prediction file per model (DIR/<model>.parquet)."""
    from sarchat.inference.baselines import BlindPrior

    t0 = time.perf_counter()
    table = make_rows(args.rows, "test", seed=0, builder=args.builder)
    write_dataset(table, os.path.join(work, "dataset"))
    t1 = time.perf_counter()
    rows = table.select(["id", "task", "question", "width", "height", "answer"]).to_pylist()
    predictors = {"oracle": lambda rows: [r["answer"] for r in rows], "mix": mix_predictions}
    if "blind" in models:
        blind = BlindPrior().fit_tables([make_rows(args.train_rows, "train", seed=1, builder=args.builder)])
        predictors["blind"] = lambda rows: [blind.predict(r) for r in rows]
    for model, path in zip(models, pred_files):
        texts = predictors[model](rows)
        preds = [{"id": r["id"], "prediction": t, "model": model, "error": None, "latency_s": None}
                 for r, t in zip(rows, texts)]
        pq.write_table(pa.Table.from_pylist(preds, schema=PREDICTION_SCHEMA), path)
    t2 = time.perf_counter()
    tasks = dict(sorted(collections.Counter(r["task"] for r in rows).items()))
    print(f"{args.rows} test dialogues ({args.builder} builder: {tasks}) built and written in {t1 - t0:.1f} s; "
          f"predictions ({', '.join(models)}) made and written in {t2 - t1:.1f} s; workdir {work}")


def _same_outputs(out_a, out_b, models):
    import filecmp
    import glob

    for model in models:
        names = ["metrics.json", "breakdown.json"] + sorted(
            os.path.basename(p) for p in glob.glob(os.path.join(out_a, model, "samples_*.jsonl")))
        for name in names:
            if not filecmp.cmp(os.path.join(out_a, model, name), os.path.join(out_b, model, name), shallow=False):
                return f"no ({model}/{name} differs)"
    return "yes"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=sum(PAPER_TEST_TASKS.values()))
    ap.add_argument("--train-rows", type=int, default=60000)
    ap.add_argument("--builder", choices=("generator", "simple"), default="generator")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--num-buckets", default="auto", help="passed to sarchat score (default auto, its default)")
    ap.add_argument("--models", default="blind",
                    help="comma-separated prediction sets scored together: blind (BlindPrior), oracle (the answers), "
                         "mix (right, boxes a few pixels off, wrong, unparseable)")
    ap.add_argument("--baseline", default=None, metavar="REPO",
                    help="another checkout (e.g. the main branch) whose `sarchat score` is timed too, alternating "
                         "with this one on the same inputs: the ratio within one run")
    ap.add_argument("--reuse-inputs", action="store_true",
                    help="keep the test split and prediction files already in --workdir (same --rows and --models)")
    ap.add_argument("--repeats", type=int, default=1, help="score runs; the median is printed")
    ap.add_argument("--profile", action="store_true",
                    help="also profile the scorer's DoFns in this process and print what dominates")
    ap.add_argument("--multiprocess", action="store_true",
                    help="also time --direct_running_mode=multi_processing --direct_num_workers=2")
    args = ap.parse_args(argv)
    from benchmarks._measure import measure

    work = args.workdir or tempfile.mkdtemp(prefix="score_scale_")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    pred_files = [os.path.join(work, f"{model}.parquet") for model in models]
    if not (args.reuse_inputs and all(os.path.exists(p) for p in pred_files)
            and os.path.exists(os.path.join(work, "dataset", "manifest.json"))):
        build_inputs(args, work, models, pred_files)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    codes = [("this code", root)] + ([("baseline " + args.baseline, os.path.abspath(args.baseline))]
                                     if args.baseline else [])
    modes = [("in-process FnApiRunner", [])]
    if args.multiprocess:
        modes.append(("FnApiRunner, 2 worker processes",
                      ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]))
    n = len(models) * args.rows
    for label, extra in modes:
        runs = {code: [] for code, _ in codes}
        for _ in range(args.repeats):  # the codes alternate, so a busy moment hits both
            for code, repo in codes:
                out = os.path.join(work, "scores" if repo == root else "scores_baseline")
                env = dict(os.environ, PYTHONPATH=repo)
                cmd = [sys.executable, "-m", "sarchat.beam_pipelines.score", "--dataset", os.path.join(work, "dataset"),
                       "--predictions", *pred_files, "--output", out,
                       "--bootstrap", str(args.bootstrap), "--num-buckets", str(args.num_buckets)] + extra
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                wall, peak_mib, text = measure(cmd, env=env)[:3]
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                if not os.path.exists(os.path.join(out, models[0], "metrics.json")):
                    raise SystemExit(f"score failed ({code}):\n{text[-3000:]}")
                runs[code].append((wall, peak_mib, cpu))
        medians = {}
        for code, _ in codes:
            walls, cpus = [r[0] for r in runs[code]], [r[2] for r in runs[code]]
            mid = len(walls) // 2
            wall, peak_mib, cpu = sorted(walls)[mid], sorted(r[1] for r in runs[code])[mid], sorted(cpus)[mid]
            medians[code] = (wall, cpu)
            print(f"[{label}, {code}] score wall time {wall:.1f} s (median of {', '.join(f'{w:.1f}' for w in walls)}), "
                  f"CPU (user + sys) {cpu:.1f} s (median of {', '.join(f'{c:.1f}' for c in cpus)}), peak RSS "
                  f"(process tree) {peak_mib / 1024:.2f} GiB, {n} scored (model, sample) pairs, {n / wall:,.0f} per second")
        if args.baseline:
            (w_new, c_new), (w_old, c_old) = medians[codes[0][0]], medians[codes[1][0]]
            print(f"[{label}] this code / baseline: wall {w_new / w_old:.2f}, CPU {c_new / c_old:.2f}")
            same = _same_outputs(os.path.join(work, "scores"), os.path.join(work, "scores_baseline"), models)
            print(f"[{label}] metrics.json, breakdown.json and samples_<task>.jsonl of the two codes identical: {same}")
    if args.profile:
        from sarchat.transforms.score.id_buckets import auto_bucket_count

        buckets = auto_bucket_count(n) if args.num_buckets == "auto" else int(args.num_buckets)
        stages, total = profile_stages(os.path.join(work, "dataset"), pred_files, os.path.join(work, "profile"),
                                       buckets)
        print(f"what dominates (cProfile of the scorer's DoFns in one process, no Beam runner; {total:.1f} s "
              f"profiled, cProfile inflates Python-heavy stages; the rest of the score wall time is the Beam "
              f"runner, coders, imports and the report):")
        for label, seconds in stages:
            print(f"  {label:<64} {seconds:7.1f} s  {100 * seconds / total:5.1f}%")
    for model in models:
        with open(os.path.join(work, "scores", model, "metrics.json")) as f:
            m = json.load(f)
        print(f"{model}: overall {m['overall']} (95% CI {m['overall_ci95']}), unweighted {m['overall_macro']}, "
              f"samples {sum(m['n']['tasks'].values())}, missing {m['missing_predictions']}; tasks {m['tasks']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
