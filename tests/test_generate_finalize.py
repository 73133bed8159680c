"""Generate's finalize step: rejects sorted per shard and merged per split as a stream, never one list
or one side input (issue 20); the manifest's counts; the step's graph shape."""
import json
import random

import apache_beam as beam
from apache_beam.pipeline import PipelineVisitor

from sarchat.beam_pipelines import generate
from sarchat.transforms.generate import finalize
from tests.helpers import random_dataset, run_generate, write_coco


def some_rejects(n, seed=0):
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        r = {"split": "test", "file": rnd.choice(["", "a.json", "b.json"]), "index": rnd.randrange(-1, 5),
             "record": f"annotation {rnd.randrange(4)}", "reason": rnd.choice(["non_finite", "unknown_image"]),
             "detail": rnd.choice(["", "x", "y"])}
        if rnd.random() < 0.3:
            r["task"] = "describe"
        out.append(r)
    return out


def test_merging_sorted_shard_parts_gives_the_one_sorted_file_whatever_the_split_into_shards():
    rejects = some_rejects(300)  # many equal keys: the line breaks the ties
    whole = finalize.shard_reject_lines(rejects)
    for seed in range(5):
        rnd = random.Random(seed)
        shuffled = rejects[:]
        rnd.shuffle(shuffled)
        parts = [[] for _ in range(rnd.randint(1, 7))]
        for r in shuffled:
            rnd.choice(parts).append(r)
        part_lines = [finalize.shard_reject_lines(p).splitlines(keepends=True) for p in parts]
        merged = b"".join(line for line, _ in finalize.merge_reject_lines(part_lines))
        assert merged == whole
    keys = [finalize.reject_key(json.loads(line), line) for line in whole.decode().splitlines()]
    assert keys == sorted(keys) and len(keys) == 300


def test_merge_reads_its_parts_lazily():
    taken = []

    def part(tag):
        for line in finalize.shard_reject_lines(some_rejects(50, seed=tag)).splitlines(keepends=True):
            taken.append(tag)
            yield line

    merged = finalize.merge_reject_lines([part(1), part(2), part(3)])
    next(merged)
    assert len(taken) <= 4, "the merge read more than one line per part ahead"


def test_tally_counts_describe_apart():
    tally = finalize.RejectTally()
    for r in ({"reason": "non_finite"}, {"reason": "non_finite"}, {"reason": "describe_small_area", "task": "describe"}):
        tally.add(r)
    assert tally.as_dicts() == ({"non_finite": 2}, {"describe_small_area": 1})


def test_authors_array_chunks():
    empty = finalize.AuthorsArray()
    assert b"".join(empty.chunks([b""])) == b"[]\n" and empty.rows == 0
    two = finalize.AuthorsArray()
    assert b"".join(two.chunks([b'{"a":1}', b"", b'{"b":2}'])) == b'[\n{"a":1},\n{"b":2}\n]\n' and two.rows == 2


def test_split_counts_sum_the_shards_and_give_zeros_to_a_split_without_results():
    results = [{"split": "test", "images": 2, "boxes": 3, "counts": {"identify/single": 4, "classify/": 1}},
               {"split": "test", "images": 1, "boxes": 1, "counts": {"identify/single": 2}}]
    assert finalize.split_counts(results, {"test": 2, "train": 1}) == {
        "test": {"images": 3, "boxes": 4, "dialogues": 7, "by_task": {"classify": {"all": 1}, "identify": {"single": 6}}},
        "train": {"images": 0, "boxes": 0, "dialogues": 0, "by_task": {}},
    }


def test_no_side_input_and_no_gathered_list_holds_rejects(tmp_path):
    """Structure, not time: the one side input is the duplicated annotation ids, and Finalize gathers
    only the shards' results (the rejects travel to the shards and are written there)."""
    root = tmp_path / "data"
    random_dataset(root)
    config = generate.GenerateConfig(str(root), str(tmp_path / "o"), splits="test", images_per_shard=10)
    formats, splits, base = generate.prepare(config)
    p = beam.Pipeline()
    generate.build(p, config, str(tmp_path / "o"), formats, splits, base)
    side_inputs, inputs = [], {}

    class Visitor(PipelineVisitor):
        def visit_transform(self, node):
            side_inputs.extend(s.pvalue.producer.full_label for s in node.side_inputs)
            inputs[node.full_label] = [i.producer.full_label for i in node.inputs if i.producer]
            inputs[node.full_label] += [s.pvalue.producer.full_label for s in node.side_inputs]

    p.visit(Visitor())

    def upstream(label):
        seen, todo = set(), [label]
        while todo:
            for parent in inputs.get(todo.pop(), []):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    # every side input is made of annotation ids only: what reads the pieces, then select(ANN_IDS)
    for label in side_inputs:
        above = {a for a in upstream(label) if not a.startswith("Generate/Pieces")}
        assert "Generate/AnnotationIds" in above and "Generate/ReadCoco" in above, label
        assert not any(a.startswith(("Generate/Records", "Generate/WriteShards", "Generate/CollectResults",
                                     "Generate/EachReject")) for a in above), (label, sorted(above))
    assert inputs["Generate/Finalize"] == ["Generate/CollectResults/Values"]
    # the shards' output reaches the gather through one step, which keeps their RESULTS only
    assert inputs["Generate/CollectResults/Key_results"] == ["Generate/WriteShards"]


def bad_dataset(root):
    """A test split with rejects of every stage: category faults, malformed and unknown images,
    unknown categories, non-finite boxes, duplicated annotation ids, describe's small boxes."""
    rnd = random.Random(5)
    images = [{"id": 100 + i, "file_name": f"i{i}.jpg", "width": 512, "height": 512} for i in range(30)]
    images.append({"file_name": "no_id.jpg", "width": 512, "height": 512})
    anns = []
    for i in range(120):
        anns.append({"id": i, "image_id": 100 + rnd.randrange(32), "category_id": rnd.randrange(8),
                     "bbox": [rnd.uniform(0, 400), rnd.uniform(0, 400), rnd.choice([2.0, 40.0, float("nan")]), 30.0]})
    anns.append(dict(anns[0]))  # a duplicated id
    cats = [{"id": i, "name": n} for i, n in enumerate(["ship", "aircraft", "car", "tank", "bridge", "harbor", "boat"])]
    cats.append({"id": 3, "name": "tank"})  # a duplicated category id
    write_coco(str(root), "test", images, anns, categories=cats)


def test_rejects_file_is_the_same_bytes_whatever_the_shard_count(tmp_path):
    root = tmp_path / "data"
    bad_dataset(root)
    one = run_generate(root, tmp_path / "one", "--images-per-shard", "1000", "--formats", "parquet")
    many = run_generate(root, tmp_path / "many", "--images-per-shard", "3", "--formats", "parquet")
    assert one["num_shards"]["test"] == 1 and many["num_shards"]["test"] == 11
    a = (tmp_path / "one" / "rejects" / "test.jsonl").read_bytes()
    b = (tmp_path / "many" / "rejects" / "test.jsonl").read_bytes()
    assert a == b and one["rejects"] == many["rejects"] and one["describe_filtered"] == many["describe_filtered"]
    lines = a.decode().splitlines()
    reasons = {json.loads(x)["reason"] for x in lines}
    assert {"duplicate_category_id", "malformed_image", "unknown_image", "non_finite"} <= reasons
    assert sum(one["rejects"]["test"].values()) + sum(one["describe_filtered"]["test"].values()) == len(lines)
    assert not (tmp_path / "many" / "rejects" / "_parts").exists()
