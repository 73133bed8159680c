"""The inference stage's imports point down: nothing in inference/ imports an entry point
(sarchat.beam_pipelines) or the `sarchat infer` front door (inference/run.py), and nothing reads the
config with getattr defaults (InferenceConfig has every field)."""
import ast
import os

INFERENCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "inference")


def _modules():
    for folder, _, names in os.walk(INFERENCE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, INFERENCE), ast.parse(open(path, encoding="utf-8").read())


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


def test_inference_imports_point_down():
    found = 0
    for rel, tree in _modules():
        found += 1
        for name in _imports(tree):
            assert not name.startswith("sarchat.beam_pipelines"), (rel, name)
            if rel != "run.py":
                assert name != "sarchat.inference.run", (rel, name)
    assert found >= 10


def test_no_getattr_reads_of_the_config():
    for rel, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and node.args:
                target = ast.unparse(node.args[0])
                assert target not in ("config", "cfg", "self.config", "self.cfg"), (rel, ast.unparse(node))
