"""The package's layers, enforced: imports point down only, and file names are unique.

    0 vocabulary   sarchat.transforms.{errors, categories, geometry, box_formats, answer_words, box_match, arrow_text,
                   schema, fileio, dataset_files, coco, progress, runtime, steps, ownership, decode, rendering}
    1 tasks        sarchat.transforms.tasks.*  (one module per task and their registry)
    2 templates    sarchat.templates, and sarchat.transforms.adapters (its box hint asks the tasks)
    3 pure code    sarchat.transforms.{generate, stats, score}.* except their pipeline.py
    4 reports      sarchat.report.*  (pure rendering, fed by the pipelines)
    5 pipelines    sarchat.transforms.{generate, stats, score}.pipeline (DoFns, CombineFns, PTransforms)
    6 consumers    sarchat.synthetic.*, sarchat.inference.*
    7 entry points sarchat.beam_pipelines.*

The task modules sit right above the vocabulary so that everything which differs per task
(building, parsing, scoring, marks, baseline answers) can be reached from generate, score, the
reports and inference alike; the primitives they share (answer words, box matching, geometry) are
vocabulary.

A module may import from a lower layer, and from its own package at the same layer; never up and
never sideways into another package of its layer. This holds for imports inside functions too:
lazy imports are for heavy optional third-party packages only, never a way around the layers.
"""
import ast
import os
from collections import Counter

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("beam_pipelines", "transforms", "templates", "inference", "report", "synthetic")
VOCABULARY = {"errors", "categories", "geometry", "box_formats", "answer_words", "box_match", "arrow_text", "schema",
              "fileio", "dataset_files", "coco", "progress", "runtime", "steps", "ownership", "decode", "rendering",
              "flag_types"}


def module_files():
    for part in PARTS:
        for folder, _, files in os.walk(os.path.join(REPO, part)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                    if rel.endswith(".__init__"):
                        rel = rel[: -len(".__init__")]
                    yield "sarchat." + rel, path


def layer(module):
    """(layer number, package) of a sarchat module."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    if top == "transforms":
        if len(parts) == 2 or parts[2] in VOCABULARY:
            return 0, "sarchat.transforms"
        pkg = "sarchat.transforms." + parts[2]
        if parts[2] in ("tasks", "adapters"):
            return (1 if parts[2] == "tasks" else 2), pkg
        return (5, pkg + ".pipeline") if len(parts) > 3 and parts[3] == "pipeline" else (3, pkg)
    return {"templates": 2, "report": 4, "synthetic": 6, "inference": 6, "beam_pipelines": 7}[top], "sarchat." + top


def project_imports(path, module):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sarchat."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".")[: -node.level if not path.endswith("__init__.py") else None]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("sarchat."):
                for alias in node.names:  # `from sarchat.transforms import geometry` imports a module
                    yield node.lineno, f"{target}.{alias.name}" if is_module(f"{target}.{alias.name}") else target


_MODULES = {m for m, _ in module_files()}


def is_module(name):
    return name in _MODULES


def test_imports_point_down_only():
    bad = []
    for module, path in module_files():
        src_layer, src_pkg = layer(module)
        for lineno, target in project_imports(path, module):
            if target == "sarchat" or target.count(".") < 1:
                continue
            dst_layer, dst_pkg = layer(target)
            if dst_layer < src_layer or dst_pkg == src_pkg:
                continue
            bad.append(f"{os.path.relpath(path, REPO)}:{lineno} ({src_layer} {src_pkg}) imports {target} "
                       f"({dst_layer} {dst_pkg})")
    assert not bad, "imports that do not point down:\n" + "\n".join(bad)


def test_every_file_name_is_unique():
    names = Counter()
    for part in PARTS + ("tests", "benchmarks", "sarchat"):
        for folder, _, files in os.walk(os.path.join(REPO, part)):
            names.update(n for n in files if n.endswith(".py") and n not in ("__init__.py", "pipeline.py"))
    assert [n for n, c in names.items() if c > 1] == []


def test_layer_table_knows_every_module():
    for module, _ in module_files():
        assert layer(module)[0] in range(8), module


@pytest.mark.parametrize("module,expected", [
    ("sarchat.transforms.geometry", 0), ("sarchat.transforms.tasks", 1), ("sarchat.transforms.tasks.count", 1),
    ("sarchat.templates", 2), ("sarchat.transforms.adapters", 2), ("sarchat.transforms.score.metrics", 3),
    ("sarchat.report.score_report", 4), ("sarchat.transforms.score.pipeline", 5), ("sarchat.inference.run", 6),
    ("sarchat.beam_pipelines.cli", 7)])
def test_layer_of(module, expected):
    assert layer(module)[0] == expected
