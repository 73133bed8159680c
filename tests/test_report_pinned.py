"""report.md, report.html and their extra sections, byte for byte: the digests were pinned from the
string-built renderers before the reports moved to Jinja2 templates, so the templates must say exactly
what the old code said. Each case takes other branches (no model, one, several; breakdowns or not;
the paper's rows or not; charts or `--plots none`; the test-set warnings; extra sections; samples
with and without images, box and label tasks, errors, missing and unparseable answers, cut text).

Charts are stubbed by a text naming what they were asked to draw (their SVG is matplotlib's and
pinned by nothing here); the sample images are real JPEGs. The toolkit version in the header is
written as VERSION before hashing. Re-pin on purpose only:
SARCHAT_PRINT_GOLDEN=1 pytest -s -k pinned tests/test_report_pinned.py prints this run's digests.
"""
import hashlib
import json
import os

import pytest

from sarchat.report import sample_sections, score_report
from sarchat.transforms.score.metrics import COLUMNS
from sarchat.transforms.tasks import TASKS

NOW = "2026-01-02 03:04 UTC"
PAPER_COUNTS = score_report.load_paper_table()["test_task_counts"]


def _digest(text):
    text = text.replace(f"sarchat {score_report.TOOLKIT_VERSION}", "sarchat VERSION")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.fixture
def stub_charts(monkeypatch):
    """Charts as a line of text naming their inputs, so the pins follow the page, not matplotlib."""
    def radar(models_metrics, include_paper=True, paper_title=False):
        return f"<svg>radar {[m['model'] for m in models_metrics]} {include_paper} {paper_title}</svg>"

    def bars(title, groups, series, ylabel="score (%)"):
        return f"<svg>bars {title} {groups} {json.dumps(series)} {ylabel}</svg>"

    monkeypatch.setattr(score_report, "radar_svg", radar)
    monkeypatch.setattr(score_report, "grouped_bars_svg", bars)


def _metrics(model, base, **extra):
    cols = {c: (None if c == "grounding.abstract_position" else round(base + i * 0.37, 2)) for i, c in enumerate(COLUMNS)}
    m = {"model": model, "columns": cols, "tasks": {t: base + i for i, t in enumerate(TASKS)}, "overall": base + 0.5,
         "overall_macro": base, "overall_ci95": [base - 1, base + 1.25],
         "n": {"columns": {c: 10 for c in COLUMNS}, "tasks": {t: 10 + i for i, t in enumerate(TASKS)}},
         "parse_failures": {t: {"count": i, "rate": 2.5 * i} for i, t in enumerate(TASKS)}, "missing_predictions": 2}
    m.update(extra)
    return m


def _breakdown(base, grounding=True, classify=True, sizes=True):
    b = {"by_category": {"identify": {"ship": base, "car": base + 5, "aircraft": None}, "refer": {"ship": base - 5}},
         "missing": {t: 0 for t in TASKS}, "samples": {t: 10 for t in TASKS}, "rejected": {"duplicate_id": 3, "bad": 1}}
    if sizes:
        b["by_size"] = {"identify": {"very small": base - 10, "small": base, "large": base + 10}}
    if grounding:
        b["grounding_boxes"] = {
            "by_category": {c: {"truth_boxes": 4, "predicted_boxes": 5, "tp": 3, "fp": 2, "fn": 1, "precision": 60.0,
                                "recall": 75.0 if c != "tank" else None} for c in ("tank", "ship", "aircraft")},
            "by_size": ({"very small": {"truth_boxes": 3, "found": 1, "recall": 33.333},
                         "large": {"truth_boxes": 2, "found": 2, "recall": 100.0}} if sizes else {})}
    if classify:
        b["classify_classes"] = {c: {"support": 5, "predicted": 4, "tp": 3, "fp": 1, "fn": 2, "precision": 75.0,
                                     "recall": 60.0, "f1": 66.667, "score": 50.0 if c != "car" else None}
                                 for c in ("car", "ship")}
        b["classify_confusion"] = {"truth": ["ship", "car", "none"], "predicted": ["ship", "car", "none"],
                                   "counts": [[3, 1, 1], [0, 2, 0], [1, 0, 0]]}
    return b


def _context(kind="synthetic", dialogues=38, **extra):
    ctx = {"dataset": "/d/data set", "split": "test", "dataset_version": "abc123", "images": 1234, "dialogues": dialogues,
           "source": {"kind": kind, "name": "SARChat-Bench synthetic SAR dataset", "detail": "seed 0"},
           "models": {"model-a": {"backend": "vllm", "adapter": "qwen2-vl", "run": "/runs/a"}}}
    ctx.update(extra)
    return ctx


def _versions():
    return [
        _metrics("model-a", 40.0, inference_errors={t: {"count": 3, "rate": 30.0} for t in TASKS},
                 dataset_version="v1", predictions_dataset_version="v1", dataset_version_mismatch=False,
                 template_spread={"classify": {"templates": 3, "min": 10.0, "max": 30.0, "range": 20.0, "stdev": 8.165},
                                  "count": {"templates": 1, "min": 5.0, "max": 5.0, "range": 0.0, "stdev": 0.0}}),
        _metrics("model-b <&> 'quoted' \"x\"|pipe", 70.0, inference_errors={t: 0 for t in TASKS},
                 dataset_version="v1", predictions_dataset_version="v0", dataset_version_mismatch=True),
        _metrics("model-c", 50.0, dataset_version=None, predictions_dataset_version="v9"),
        _metrics("model-d", 55.0, dataset_version=None, predictions_dataset_version=None),
        _metrics("model-e", 20.0, dataset_version="v1", predictions_dataset_version=None, overall=None,
                 overall_ci95=None, overall_macro=None, missing_predictions=9),
    ]


def _paper_sized():
    """One model measured on a test set of the paper's size and task sizes (no warning)."""
    return [_metrics("model-a", 40.0, n={"tasks": dict(PAPER_COUNTS)})]


def _sections():
    return [score_report.Section("Extra <html> & md", html="<p>raw html kept</p>", markdown="some *markdown*"),
            lambda: score_report.Section("From a callable", markdown="only markdown: <pre> in the page & escaped"),
            lambda: None,
            score_report.Section("Empty"),
            # a heading inside a section's Markdown (the dataset section's) stays out of the contents;
            # a title the report already uses gets its own anchor in the page
            score_report.Section("Dataset version", html="<p>again</p>", markdown="Text.\n\n## Overview\n\n| a |\n|---|")]


def _case(name):
    """(models_metrics, breakdowns, keyword arguments) of one report case."""
    two = [_metrics("model-a", 40.0), _metrics("model-b", 70.0)]
    full = {"model-a": _breakdown(40.0), "model-b": _breakdown(70.0)}
    if name == "empty":
        return [], None, {}
    if name == "one":
        return [_metrics("model-a", 40.0)], None, {}
    if name == "two_breakdowns":
        return two, full, {"context": _context(), "unattributed_rejects": 3}
    if name == "no_paper":
        return two, full, {"include_paper": False, "context": _context()}
    if name == "partial_breakdowns":
        return (two + [_metrics("model-c", 10.0)],
                {"model-a": _breakdown(40.0, classify=False, sizes=False), "model-b": _breakdown(70.0, grounding=False),
                 "model-c": {}}, {"context": _context(kind="dataset")})
    if name == "paper_test_set":
        return _paper_sized(), {"model-a": _breakdown(40.0, grounding=False, classify=False)}, {
            "context": _context(kind="dataset", dialogues=sum(PAPER_COUNTS.values()), dataset=None)}
    if name == "task_sizes_differ":
        m = _paper_sized()
        m[0]["n"]["tasks"]["count"] += 1
        return m, None, {"context": _context(kind="other", dialogues=sum(PAPER_COUNTS.values()), source=None)}
    if name == "other_size":
        return _paper_sized(), None, {"context": {"dialogues": 7}}
    if name == "versions":
        return _versions(), {"model-a": _breakdown(40.0)}, {"extra_sections": _sections()}
    raise AssertionError(name)


REPORT_CASES = ("empty", "one", "two_breakdowns", "no_paper", "partial_breakdowns", "paper_test_set",
                "task_sizes_differ", "other_size", "versions")
REPORT_DIGESTS = {
    "empty.md": "58e9eab25997a806f38da177e897c751243040998292671d3069f5ad559024dc",
    "one.md": "26654c4c216731f462ea0c3e545c4d4c4120e4abaef784e8185e7b08f4792ccb",
    "two_breakdowns.md": "eb315007e1e9e5af52253f4a9fd24091c60139cca35f20011dd5a6e567241b1a",
    "no_paper.md": "4f6ef13f4c97a2953217a01e9366a741f2fc4afb2e1fb0e05d3fc4bc88b8baf4",
    "partial_breakdowns.md": "4f9fa6745b2f2ee94cece605158b55ec245f4880a788d4f9ec8e2af25c700f0b",
    "paper_test_set.md": "76370223e76e15c5d8bdba49ebbf2f2870ef33ec021948d87828e6cd9dab43d1",
    "task_sizes_differ.md": "fbd867024bdedc0b8a51d89908b4ed63453aa7b83eb572ec21b0039595a76520",
    "other_size.md": "7f6f1c87a80a23de03866c87d0247ef049a70073ba8b18e1e46e8634263619a9",
    "versions.md": "1ed3657ec7d04457426dcd4ca5813a2bdea4afdefeb26414976ae791db16e052",
    "empty.svg.html": "357a2e67e630c80d26190dffd5c9cd2618043020db76f69e860dd0ce9b9ed9b5",
    "empty.none.html": "487cc8bc1a985f6ecd005d201341730bdd1f5312a209fe48661fbdbdd088f649",
    "one.svg.html": "fa4e36cdf4c438ee6f758184118b68d8121304a2ceebae8bc9b9b967f229d3b3",
    "one.none.html": "4e3b00251587348c0739d16bf115092e784878a157c8e73f8d1c853fd12ce98a",
    "two_breakdowns.svg.html": "2e1b874af5c0b21ab8bd20224771d2cef9a0fc4e58848853a56b5de37c3b9970",
    "two_breakdowns.none.html": "356d472813f75c29789ee0b14ffa4422d33147cd74f6edecc0fb993f6be50535",
    "no_paper.svg.html": "aeb76a621e71ad0b329d359aedb2776fe497224545d1e1f799d24076e2da3aab",
    "no_paper.none.html": "9c59ea1933b4f5466a3b8504d76ad41d7ced180750d3812f1fb773edb7d17c19",
    "partial_breakdowns.svg.html": "70d5dcc1e62a2ead34eb7e87ff5709da5cde80d4a9b24e5c88ce29484c583663",
    "partial_breakdowns.none.html": "f26b407be793baf8116add7de0cf6f62ce0bc14f313aaa16f7afaf1504bb1138",
    "paper_test_set.svg.html": "048a39506745892c8dd0af3fce75cabaa9b1017cb2603630991c72d43a55b39e",
    "paper_test_set.none.html": "85726d12a54de2f29c9cee0a433473dfdea7f072e5af5e7efe51447f8446e49b",
    "task_sizes_differ.svg.html": "d56d8c74172f58bbd5709131fdb997af51a2cd6d3156856cf3610d0d00bd0a91",
    "task_sizes_differ.none.html": "c184f501eff507a5934f819f33f80feb4e55e9c4779e8f3ce232a96ef02435a2",
    "other_size.svg.html": "e654212d4b50c07ec7572aa500b729e57d12d19f65b8b9534986b8d6d55c636f",
    "other_size.none.html": "987892a8b073551252199d7607a943e93c1327debec787c6b983ea2281cde206",
    "versions.svg.html": "1b9b215614b8ed5842e1fda085acf2a0faf015f8fdf075eac7e990934c8ee4fc",
    "versions.none.html": "2a9fc8d5103cd560e7256b800a9d1116687720ba40e82981ce0eb8eff3baa653",
    "written.report.md": "892b10e05f54c6222d670b633338779a5454b12a20be7b238737005f312c287a",
    "written.report.html": "aefd0fd4124b6bc572842446ece3f598901652b252057b2df0f82a444679cca2",
}


def _check(pins, key, text):
    """Compare the digest of `text` with its pin (or, re-pinning, print it)."""
    digest = _digest(text)
    if os.environ.get("SARCHAT_PRINT_GOLDEN"):
        print(f'\n    "{key}": "{digest}",')
        return
    assert digest == pins[key], text


@pytest.mark.parametrize("name", REPORT_CASES)
def test_report_markdown_is_pinned(name, stub_charts):
    models, breakdowns, kw = _case(name)
    _check(REPORT_DIGESTS, f"{name}.md", score_report.render_markdown(models, breakdowns, now=NOW, **kw))


@pytest.mark.parametrize("charts", (True, False), ids=("svg", "none"))
@pytest.mark.parametrize("name", REPORT_CASES)
def test_report_html_is_pinned(name, charts, stub_charts):
    models, breakdowns, kw = _case(name)
    page = score_report.render_html(models, breakdowns, now=NOW, charts=charts, **kw)
    _check(REPORT_DIGESTS, f"{name}.{'svg' if charts else 'none'}.html", page)


def test_written_reports_are_pinned(tmp_path, stub_charts):
    """write_reports writes exactly the two renderings (the same date in both)."""
    models, breakdowns, kw = _case("two_breakdowns")
    score_report.write_reports(str(tmp_path), models, breakdowns, _sections(), now=NOW, **kw)
    for name in ("report.md", "report.html"):
        _check(REPORT_DIGESTS, f"written.{name}", (tmp_path / name).read_text(encoding="utf-8"))


# --- the samples and dataset sections -------------------------------------------------------------

def _sample_inputs(tmp_path):
    from PIL import Image

    Image.new("RGB", (120, 80), (90, 90, 90)).save(tmp_path / "img.png")
    Image.new("RGB", (300, 200), (40, 60, 80)).save(tmp_path / "big.png")
    truth = [[5, 5, 30, 25], [40, 40, 60, 70], [90, 10, 118, 30]]
    rows = {
        "c1": {"id": "c1", "task": "count", "subset": None, "image_path": "img.png", "width": 120, "height": 80,
               "question": "<image>\n[count] How many ships? <b>", "answer": "There are 3.", "gt_boxes": truth,
               "gt_count": 3, "gt_categories": ["ship"] * 3},
        "g1": {"id": "g1", "task": "grounding", "subset": "multi", "image_path": "big.png", "width": 300,
               "height": 200, "question": "Where are the aircraft and tanks?\nSecond line", "answer": "boxes",
               "gt_boxes": [[10, 10, 100, 60], [150, 100, 290, 190]], "gt_categories": ["aircraft", "tank"],
               "gt_relations": ["aircraft|left of|tank"]},
        "k1": {"id": "k1", "task": "classify", "subset": None, "image_path": "img.png", "width": 120, "height": 80,
               "question": "What is in the image?", "answer": "ship", "gt_boxes": [], "gt_categories": ["ship", "car"]},
        "k2": {"id": "k2", "task": "classify", "subset": "single", "image_path": "gone.png", "width": 10, "height": 10,
               "question": "q" * 1000, "answer": "a|b", "gt_boxes": [], "gt_categories": ["ship"]},
        "x1": {"id": "x1", "task": "count", "subset": None, "image_path": "img.png", "width": None, "height": None,
               "question": None, "answer": None, "gt_boxes": None, "gt_count": 0, "gt_categories": None},
    }
    results = {
        ("m1", "c1"): {"prediction": "There are 2. {<0><0><30><25>}", "error": None, "result": {
            "status": "ok", "pred_count": 2, "pred_boxes": [[5, 5, 30, 25], [70, 5, 80, 15]], "pred_labels": [],
            "columns": ["count.iou50", "count.count"], "tp": [1, 0], "fp": [1, 1], "fn": [2, 1]}},
        ("m2 <x>", "c1"): {"prediction": "", "error": "timeout after 60 s " + "E" * 400,
                           "result": {"status": "inference_error"}},
        ("m1", "g1"): {"prediction": "aircraft box, tank box", "error": None, "result": {
            "status": "ok", "pred_boxes": [[12, 12, 98, 58], [0, 0, 5, 5], [150, 100, 290, 190]],
            "pred_box_categories": ["aircraft", "tank", "ship"], "pred_labels": ["aircraft|left of|tank"],
            "columns": ["grounding.abstract_position", "grounding.multi"], "tp": [1, 1], "fp": [0, 2],
            "fn": [0, 1]}},
        ("m1", "k1"): {"prediction": "ship and tank\nnew line & <tag>", "error": None, "result": {
            "status": "ok", "pred_labels": ["ship", "tank"], "columns": ["classify"], "tp": [1], "fp": [1],
            "fn": [1]}},
        ("m2 <x>", "k1"): {"prediction": "???", "error": None, "result": {"status": "unparseable"}},
        ("m1", "k2"): {"prediction": "a" * 2000, "error": None, "result": {
            "status": "ok", "pred_labels": ["ship"], "columns": ["classify"], "tp": [1], "fp": [0], "fn": [0]}},
        ("m1", "x1"): {"prediction": None, "error": None, "result": {"status": "missing"}},
    }
    return rows, ["m1", "m2 <x>"], results


SECTION_DIGESTS = {
    "samples.256.html": "0bf2421bf05e45a7123c82414008f79287c4f07a27e6caaff827930f1e4c735e",
    "samples.256.md": "7808e01dc491e23aa090b61f8232e27b6471aa00fc17a539eecf6a3ada6a16e4",
    "samples.64.html": "2eed05ed030f11880c726ad64c3a7de080e980d00ee698cc48bd861a7cf6d826",
    "samples.64.md": "7808e01dc491e23aa090b61f8232e27b6471aa00fc17a539eecf6a3ada6a16e4",
    "no_samples.html": "bf7008c301bc6dca2f8064c49737d9b04f900223348952e0a5322e61a8ba0370",
    "no_samples.md": "a7505ef7046d0164222d6d2514bab592e8fe4949f1fb8d9602e4cab145048b94",
    "no_root.html": "81b8fb8d410aa799c9024830843772c4bf3f8cada385c0782ba2b6bff86ed8e8",
    "no_root.md": "ec9a80ecc07de8a6463993e53393098000d402cea8ad38f9e2d6c36d34de2d76",
    "panels": "c53bf4b6a3bd6fcfe083d833d491e33f7b2901d3214fd7fffa15e458a9802455",
    "dataset.html": "ad113d27bb6d153af8ba2f2dee0ea208795012ea18fb184b1d6b01561c3b9fe2",
    "dataset.md": "a280581e5ee0353a2a48a32c5670b409f7ce097b908e82677bb1a664f9c71de8",
}


@pytest.mark.parametrize("max_side", (256, 64), ids=("256", "64"))
def test_samples_section_is_pinned(tmp_path, max_side):
    rows, models, results = _sample_inputs(tmp_path)
    order = ["c1", "g1", "k1", "k2", "x1"]
    sec = sample_sections.samples_section(order, rows, models, results, image_root=str(tmp_path),
                                          max_side=max_side, title="Samples <shown>")
    assert sec.title == "Samples <shown>"
    _check(SECTION_DIGESTS, f"samples.{max_side}.html", sec.html.replace(str(tmp_path), "ROOT"))
    _check(SECTION_DIGESTS, f"samples.{max_side}.md", sec.markdown)


def test_empty_and_imageless_samples_sections_are_pinned(tmp_path):
    rows, models, results = _sample_inputs(tmp_path)
    empty = sample_sections.samples_section([], rows, models, results)
    no_root = sample_sections.samples_section(["k1", "c1"], rows, models, results, image_root=None)
    for key, text in (("no_samples.html", empty.html), ("no_samples.md", empty.markdown),
                      ("no_root.html", no_root.html), ("no_root.md", no_root.markdown)):
        _check(SECTION_DIGESTS, key, text)


def test_draw_panel_is_pinned():
    from PIL import Image

    image = Image.new("RGB", (400, 300), (30, 30, 30))
    truth = [[10, 10, 120, 90], [200, 150, 390, 290], [20, 200, 60, 240]]
    preds = [[12, 12, 118, 92], [0, 0, 3, 3], [205, 152, 380, 280], [300, 10, 100, 50]]
    uris = []
    for kw in ({}, {"gt_hit": [True, False, True], "pred_boxes": preds, "pred_ok": [True, False, True, False]},
               {"gt_labels": ["aircraft", "ship", "tank"], "pred_boxes": preds, "pred_labels": ["a", "", "c", "d"]},
               {"max_side": 500, "gt_labels": ["x"] * 3}):
        rects = []
        uri, size = sample_sections.draw_panel(image, 400, 300, truth, label_rects=rects, **kw)
        uris.append(f"{uri} {size} {rects}")
    uri, size = sample_sections.draw_panel(image, None, None, [], max_side=100)
    uris.append(f"{uri} {size}")
    _check(SECTION_DIGESTS, "panels", "\n".join(uris))


def test_dataset_section_is_pinned(monkeypatch):
    """The dataset section around the stats plots (stubbed) and stats.md (pinned in test_stats.py)."""
    from tests.test_stats import _stats_doc

    monkeypatch.setattr(sample_sections, "render_plots",
                        lambda stats, fmt="png": {"categories": b"<?xml?>\n<svg>c</svg>", "shapes": b"<svg>s</svg>"})
    sec = sample_sections.dataset_section(_stats_doc())
    _check(SECTION_DIGESTS, "dataset.html", sec.html)
    _check(SECTION_DIGESTS, "dataset.md", sec.markdown)
