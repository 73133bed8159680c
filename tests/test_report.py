"""Reports: the paper's Table 3 as data, report.md layout, self-contained report.html, extensibility."""
import re

import pytest

from sarchat.report import score_report as report
from sarchat.transforms.score.metrics import COLUMNS, TASK_COLUMNS
from sarchat.transforms.tasks import TASKS


def fake_metrics(model, base):
    cols = {c: (None if c == "grounding.abstract_position" else round(base + i, 2)) for i, c in enumerate(COLUMNS)}
    tasks = {t: base for t in TASKS}
    return {"model": model, "columns": cols, "tasks": tasks, "overall": base + 0.5, "overall_macro": base,
            "overall_ci95": [base, base + 1.0], "n": {"columns": {c: 10 for c in COLUMNS}, "tasks": {t: 10 for t in TASKS}},
            "parse_failures": {t: {"count": 1, "rate": 10.0} for t in TASKS}, "missing_predictions": 2}


def fake_breakdown(base):
    return {"by_category": {"identify": {"ship": base, "car": base + 5}, "refer": {"ship": base - 5}},
            "by_size": {"identify": {"very small": base - 10, "small": base, "large": base + 10}},
            "missing": {t: 0 for t in TASKS}, "samples": {t: 10 for t in TASKS}, "rejected": {"duplicate_id": 3}}


MODELS = [fake_metrics("model-a", 40.0), fake_metrics("model-b", 70.0)]
BREAKDOWNS = {"model-a": fake_breakdown(40.0), "model-b": fake_breakdown(70.0)}


def test_paper_table3_data():
    paper = report.load_paper_table()
    assert len(paper["rows"]) == 16
    assert paper["column_order"] == list(COLUMNS)
    for r in paper["rows"]:
        assert set(r["columns"]) == set(COLUMNS)
        assert all(0.0 <= v <= 100.0 for v in r["columns"].values())
    top = {r["model"]: r for r in paper["rows"]}["InternVL2.5-8B"]
    assert top["avg_score"] == 92.79 and top["columns"]["count.only_count"] == 74.14
    assert top["columns"]["grounding.abstract_position"] == 81.25 and top["columns"]["classify"] == 97.25
    assert sum(paper["test_task_counts"].values()) == 226_636
    # Eq. 4 from the paper's own columns lands near (not exactly on) its published Avg score
    for r in paper["rows"]:
        assert abs(report.paper_recomputed_overall(r, paper) - r["avg_score"]) < 1.0
    s = report.paper_task_scores(top)
    assert s["refer"] == pytest.approx(sum(top["columns"][c] for c in TASK_COLUMNS["refer"]) / 4)


def test_markdown_table3_layout():
    md = report.render_markdown(MODELS, BREAKDOWNS)
    header = next(line for line in md.splitlines() if line.startswith("| Source | Model"))
    labels = [c.strip() for c in header.strip("|").split("|")]
    assert labels[:4] == ["Source", "Model", "Param", "Avg score"]
    assert labels[4:] == [report.COLUMN_LABELS[c] for c in COLUMNS]
    run_rows = [line for line in md.splitlines() if line.startswith("| this run |")]
    # this run's rows ranked by Avg score (issue 22), whatever order the models came in
    assert [r.split("|")[2].strip() for r in run_rows] == ["model-b", "model-a"]
    assert run_rows[1].startswith("| this run | model-a | – | 40.50 | 40.00 | 41.00 | 42.00 | – | 44.00 |")
    paper_rows = [line for line in md.splitlines() if line.startswith(f"| {report.PAPER_LABEL} |")]
    assert len(paper_rows) == 16 and "InternVL2.5-8B" in paper_rows[0] and "92.79" in paper_rows[0]
    assert "copied from the paper" in md
    # summary: weighted overall, CI, unweighted mean, parse-failure rates per task
    assert "| model-b | 70.50 | [70.00, 71.00] | 70.00 |" in md
    assert "| model-a | 10.0 (1) | 10.0 (1) | 10.0 (1) | 10.0 (1) | 10.0 (1) | 10.0 (1) |" in md
    assert "task score by category" in md and "by object size" in md
    bare = report.render_markdown(MODELS, include_paper=False)
    assert report.PAPER_LABEL not in bare and "InternVL" not in bare


def test_html_is_self_contained_with_charts():
    html = report.render_html(MODELS, BREAKDOWNS)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    # two radar panels (no context: the test set is not known to be the paper's, so this run's models and
    # the paper's rows are drawn apart), two per-category charts, one per-size chart
    assert html.count("<svg") == 2 + 2 + 1
    assert "id='radar-paper'" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)  # no external resource
    assert "<script" not in html
    assert "model-a" in html and "InternVL2.5-8B" in html and report.PAPER_LABEL in html
    assert "Task scores (radar" in html and "Per category" in html and "Per object size" in html


def test_extra_sections_are_appended():
    sec = report.Section("Dataset", html="<p id='ds'>42 images</p>", markdown="42 images")
    later = lambda: report.Section("Samples", html="<p>sample list</p>", markdown="sample list")  # noqa: E731
    html = report.render_html(MODELS, BREAKDOWNS, extra_sections=[sec, later])
    assert html.index("<p id='ds'>42 images</p>") < html.index("sample list") < html.index("</body>")
    md = report.render_markdown(MODELS, extra_sections=[sec, later])
    assert md.index("## Dataset\n\n42 images") < md.index("## Samples")


def test_reports_without_models_or_breakdowns():
    assert "SARChat-Bench results" in report.render_html([], None)
    assert "InternVL2.5-8B" in report.render_markdown([], None)
    board = [{"rank": 1, "model": "m", "overall": 1.0, "overall_ci95": [None, None], "overall_macro": None,
              "tasks": {t: None for t in TASKS}, "parse_failures": 0, "missing_predictions": 0, "rejected": 0}]
    assert "| 1 | m | 1.00 | – | – |" in report.render_leaderboard_md(board)


def test_inference_errors_and_dataset_versions_are_reported():
    a = dict(fake_metrics("model-a", 40.0), inference_errors={t: {"count": 3, "rate": 30.0} for t in TASKS},
             dataset_version="v1", predictions_dataset_version="v1", dataset_version_mismatch=False)
    b = dict(fake_metrics("model-b", 70.0), inference_errors={t: {"count": 0, "rate": 0.0} for t in TASKS},
             dataset_version="v1", predictions_dataset_version="v0", dataset_version_mismatch=True)
    c = dict(fake_metrics("model-c", 50.0), dataset_version="v1", predictions_dataset_version=None)
    md = report.render_markdown([a, b, c], BREAKDOWNS)
    header = next(line for line in md.splitlines() if line.startswith("| Model | Overall (Eq. 4)"))
    assert header.rstrip(" |").endswith("Missing predictions | Inference errors | Rejected predictions")
    assert "| model-a | 30.0 (3) | 30.0 (3) |" in md  # the per-task inference error table
    assert "- model-a: dataset version v1, predictions made on the same version" in md
    assert ("- model-b: WARNING: predictions made on dataset version v0, scored on version v1 "
            "(allowed by --allow-version-mismatch)") in md
    assert "- model-c: dataset version v1; the predictions record no version" in md
    page = report.render_html([a, b, c], BREAKDOWNS)
    assert "<h2>Inference errors per task</h2>" in page and "<li class=warn>model-b: WARNING" in page
    board = [{"rank": 1, "model": "m", "overall": 1.0, "overall_ci95": [None, None], "overall_macro": None,
              "tasks": {t: None for t in TASKS}, "parse_failures": 2, "inference_errors": 5,
              "missing_predictions": 0, "rejected": 1}]
    assert "| Parse failures | Inference errors | Missing | Rejected |" in report.render_leaderboard_md(board)
    assert report.render_leaderboard_md(board).rstrip().endswith("| 2 | 5 | 0 | 1 |")


def test_what_one_sample_shows_is_capped(tmp_path):
    from PIL import Image

    from sarchat.report import sample_sections as S

    Image.new("RGB", (64, 64), (90, 90, 90)).save(tmp_path / "img.png")
    row = {"id": "s", "task": "count", "subset": None, "image_path": "img.png", "width": 64, "height": 64,
           "question": "<image>\n[count] How many ships? " + "q" * 5000, "answer": "There is 1 instance. {<1><1><9><9>}",
           "gt_boxes": [[1, 1, 9, 9]], "gt_count": 1, "gt_categories": ["ship"]}
    boxes = [[i % 60, 1, i % 60 + 3, 4] for i in range(1000)]
    result = {"status": "ok", "pred_count": 1000, "pred_boxes": boxes, "pred_labels": [], "columns": ["count.iou50"],
              "tp": [0], "fp": [1000], "fn": [1]}
    huge = "There are 1000 instances. " + "{<1><1><4><4>}" * 1000
    sec = S.samples_section(["s"], {"s": row}, ["m"], {("m", "s"): {"prediction": huge, "error": "E" * 10_000,
                                                                     "result": result}},
                            image_root=str(tmp_path))
    assert f"(cut: {S.MAX_TEXT:,} of {len(huge):,} characters shown)" in sec.html
    assert f"(cut: {S.MAX_TEXT:,} of {len(row['question']) - len('<image>' + chr(10)):,} characters shown)" in sec.html
    assert f"(cut: {S.MAX_ERROR} of 10,000 characters shown)" in sec.html
    assert f"(cut: {1000 + 2 - S.MAX_CHIPS} more marks not shown)" in sec.html  # count, 1000 boxes, the missed one
    assert f"{S.MAX_BOXES} of 1000 drawn" in sec.html
    assert len(sec.html) < 200_000


# ---------------------------------------------------------------------------------------------
# What the report shows: header, test-set warning, contents, radar names, sample captions


def synthetic_context(dialogues=38, kind="synthetic"):
    return {"dataset": "/d/dataset", "split": "test", "dataset_version": "abc123", "images": 5, "dialogues": dialogues,
            "source": {"kind": kind, "name": "SARChat-Bench synthetic SAR dataset", "detail": "seed 0"},
            "models": {"model-a": {"backend": "vllm", "adapter": "qwen2-vl", "run": "/runs/a"}}}


def test_header_names_source_sizes_versions_date_and_each_models_backend():
    page = report.render_html(MODELS, BREAKDOWNS, context=synthetic_context(), now="2026-01-02 03:04 UTC")
    header = page[page.index("<header"):page.index("</header>")]
    for text in ("SYNTHETIC: SARChat-Bench synthetic SAR dataset", "5 images, 38 dialogues", "abc123",
                 f"sarchat {report.TOOLKIT_VERSION}", "2026-01-02 03:04 UTC", "/d/dataset"):
        assert text in header, text
    # model-a from its run manifest; model-b has none: unknown, not guessed
    assert "<td class=l>model-a</td><td class=l>vllm</td><td class=l>qwen2-vl</td>" in header
    assert "<td class=l>model-b</td><td class=l>unknown</td><td class=l>unknown</td>" in header
    md = report.render_markdown(MODELS, context=synthetic_context(), now="2026-01-02 03:04 UTC")
    assert "- **Data source:** SYNTHETIC: SARChat-Bench synthetic SAR dataset (seed 0)" in md
    assert "- **Date:** 2026-01-02 03:04 UTC" in md and "| model-b | unknown | unknown |" in md
    # without a context (external use): what metrics.json says, the rest unknown
    bare = report.render_html(MODELS)
    assert "unknown: not recorded" in bare and "20 dialogues" not in bare and "60 dialogues" in bare


def test_test_set_warning_beside_the_paper_rows():
    paper = report.load_paper_table()
    counts = paper["test_task_counts"]
    as_paper = [dict(MODELS[0], n={"tasks": dict(counts), "columns": {}})]
    real = synthetic_context(sum(counts.values()), kind="dataset")
    assert report.test_set_warning(real, as_paper) is None
    # synthetic: warned whatever its size
    assert "synthetic" in report.test_set_warning(synthetic_context(sum(counts.values())), as_paper)
    # a named dataset of another size
    assert "not the paper's: 38 dialogues" in report.test_set_warning(synthetic_context(38, kind="dataset"), as_paper)
    # same total, other task sizes
    shifted = dict(counts, classify=counts["classify"] - 1, count=counts["count"] + 1)
    other = [dict(MODELS[0], n={"tasks": shifted, "columns": {}})]
    assert "task sizes differ" in report.test_set_warning(real, other)
    page = report.render_html(MODELS, context=synthetic_context())
    t3 = page.index("<h2>Table 3: this run and the paper's published rows</h2>")
    assert t3 < page.index("id='test-set-warning'") < page.index("<td class=l>paper, Table 3</td>")
    md = report.render_markdown(MODELS, context=synthetic_context())
    assert md.index("## Table 3") < md.index("> **Warning: this run's test set is synthetic") < md.index("| Source |")
    assert "Warning" not in report.render_markdown(MODELS, context=synthetic_context(), include_paper=False)


def test_table_of_contents_links_every_section():
    sec = report.Section("Samples", html="<p>s</p>", markdown="s")
    page = report.render_html(MODELS, BREAKDOWNS, extra_sections=[sec])
    ids = re.findall(r"<a class='anchor' id='([^']+)'></a><h2>", page)
    assert len(ids) == page.count("<h2") >= 8 and len(set(ids)) == len(ids)
    toc = page[page.index("<nav class='toc'"):page.index("</nav>")]
    assert re.findall(r"href='#([^']+)'", toc) == ids
    assert page.index("</nav>") < page.index("<h2")
    md = report.render_markdown(MODELS, BREAKDOWNS, extra_sections=[sec])
    assert "[Samples](#samples)" in md and "[Table 3 (this run and the paper's published rows)](#table-3-this-run-and-" \
        "the-papers-published-rows)" in md


def test_radar_names_every_model_on_hover_and_in_the_legend():
    svg = report.radar_svg(MODELS)
    for r in report.load_paper_table()["rows"]:
        assert f"<title>{report.PAPER_LABEL}: {r['model']}</title>" in svg, r["model"]
        assert f">{r['model']} ({r['params']})<" in svg  # legend entry as SVG text
    for m in MODELS:
        assert f"<title>this run: {m['model']}</title>" in svg
    for t in TASKS:
        assert report.TASK_LABELS[t].split(" ")[0] in svg  # axis labels are text, not paths


def test_sample_captions_divide_by_the_truth_boxes(tmp_path):
    from PIL import Image

    from sarchat.report import sample_sections as S

    Image.new("RGB", (100, 100), (90, 90, 90)).save(tmp_path / "img.png")
    truth = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]]
    row = {"id": "s", "task": "count", "subset": None, "image_path": "img.png", "width": 100, "height": 100,
           "question": "How many ships?", "answer": "4", "gt_boxes": truth, "gt_count": 4,
           "gt_categories": ["ship"] * 4}
    result = {"status": "ok", "pred_count": 1, "pred_boxes": [[0, 0, 10, 10]], "pred_labels": [],
              "columns": ["count.iou50"], "tp": [1], "fp": [0], "fn": [3]}
    sec = S.samples_section(["s"], {"s": row}, ["m"], {("m", "s"): {"prediction": "1", "error": None,
                                                                     "result": result}}, image_root=str(tmp_path))
    # one predicted box, right: 1 of the 4 truth boxes, not "1/1"
    assert "m: 1 of 4 truth boxes found, 1 predicted" in sec.html and "1/1" not in sec.html
    # every image enlarges on click (a checkbox and its label, no script)
    assert sec.html.count("<input type='checkbox' class='zoom'") == sec.html.count("<img") == 2


def test_boxes_carry_their_category_label():
    from PIL import Image

    from sarchat.report import sample_sections as S

    image = Image.new("RGB", (200, 200), (0, 0, 0))
    box = [[60, 80, 140, 160]]
    plain, _ = S.draw_panel(image, 200, 200, box, max_side=200)
    labelled, _ = S.draw_panel(image, 200, 200, box, max_side=200, gt_labels=["aircraft"])

    def pixels(uri):
        import base64
        import io

        im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
        return im.crop((60, 60, 140, 79))  # the strip above the box, where the label goes

    from PIL import ImageStat

    assert ImageStat.Stat(pixels(plain)).mean[1] < 5
    assert ImageStat.Stat(pixels(labelled)).mean[1] > 5  # green text drawn there


def test_data_source_comes_from_the_annotation_files_info(tmp_path):
    import hashlib
    import json

    from sarchat.transforms.score import score_inputs as SI

    def entry(doc):
        path = tmp_path / f"ann-{len(list(tmp_path.iterdir()))}.json"
        data = json.dumps(doc).encode()
        path.write_bytes(data)
        return path, {"path": str(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    _, synth = entry({"info": {"generator": "sarchat synth", "description": "synthetic SAR", "seed": "7"},
                      "images": []})
    src = SI.data_source({"inputs": {"test": synth}}, "test")
    assert src["kind"] == "synthetic" and src["name"] == "synthetic SAR" and "seed 7" in src["detail"]
    _, real = entry({"info": {"description": "SARDet-100K"}, "images": []})
    assert SI.data_source({"inputs": {"test": real}}, "test")["kind"] == "dataset"
    assert SI.data_source({"inputs": {"test": real}}, "test")["name"] == "SARDet-100K"
    # the file changed since generation (or is gone): nothing proven either way
    path, changed = entry({"info": {"generator": "sarchat synth"}, "images": []})
    path.write_text(json.dumps({"info": {"generator": "sarchat synth"}, "images": [1]}))
    assert SI.data_source({"inputs": {"test": changed}}, "test")["kind"] == "unknown"
    assert SI.data_source({"inputs": {"test": {"path": str(tmp_path / "gone.json")}}}, "test")["kind"] == "unknown"
    assert SI.data_source(None, "test")["kind"] == "unknown"
    # a generator recorded in the manifest's input entry itself wins
    assert SI.data_source({"inputs": {"test": {"generator": "sarchat synth"}}}, "test")["kind"] == "synthetic"


def test_report_date_is_fixed_by_source_date_epoch(monkeypatch):
    from sarchat.report import score_report

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert score_report._utc_now() == "1970-01-02 00:00 UTC"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "not a number")  # ignored: the current time
    assert re.fullmatch(r"20\d\d-\d\d-\d\d \d\d:\d\d UTC", score_report._utc_now())


def test_html_templates_escape_every_value_as_html_escape_does(tmp_path):
    """An *.html.j2 template escapes what it prints with html.escape's entities (the ones the page
    has always used), |safe passes trusted HTML through, and a Markdown template prints text as is."""
    import html

    from sarchat.transforms.rendering import render

    (tmp_path / "t.html.j2").write_text("<p title='{{ v }}'>{{ v }}</p>{{ svg | safe }}", encoding="utf-8")
    (tmp_path / "t.md.j2").write_text("{{ v }}", encoding="utf-8")
    v, module = "<b>a & 'b' \"c\"</b>", str(tmp_path / "module.py")
    assert render(module, "t.html.j2", v=v, svg="<svg/>") == f"<p title='{html.escape(v)}'>{html.escape(v)}</p><svg/>"
    assert "&#x27;b&#x27;" in render(module, "t.html.j2", v=v, svg="")
    assert render(module, "t.md.j2", v=v) == v
