"""The benchmark scripts still fit the code they measure: each builds its configuration the way
the command does (benchmarks/infer_vllm.py once passed an argparse namespace where the backends
take an InferenceConfig, and crashed only when run). No timing here."""
import importlib.util
import os

import pytest

from sarchat.inference.config import InferenceConfig
from tests.fixture_dataset import write_fixture_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(REPO, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    generated, _, _ = write_fixture_dataset(str(tmp_path_factory.mktemp("bench")), n_images=2)
    return generated


def test_infer_vllm_builds_the_config_and_backends_it_measures(dataset, tmp_path):
    from sarchat.inference.backends.openai_backend import OpenAIBackend
    from sarchat.inference.run import resolve_adapter

    bench = load_script("infer_vllm")
    args = bench.argparse.Namespace(adapter="llava-1.5", max_tokens=16, batch_size=8, concurrency=4)
    cfg = bench._cfg(dataset, str(tmp_path / "out"), args, "openai", "tiny", "--base-url", "http://127.0.0.1:9/v1")
    assert isinstance(cfg, InferenceConfig) and cfg.backend == "openai"
    adapter = resolve_adapter(cfg, OpenAIBackend)
    backend = OpenAIBackend(cfg, adapter)
    assert backend.sampling()["max_tokens"] == 16
    assert bench._samples(dataset, adapter)  # the split's rows with their image locations


def test_infer_vllm_fake_engine_runs_whole_runs_with_the_engine_args(dataset, tmp_path):
    """--fake-engine times whole `sarchat infer` runs without vLLM; --engine-arg reaches the
    in-process engine's config (both sides of the real comparison), never the openai backend's."""
    bench = load_script("infer_vllm")
    args = bench.argparse.Namespace(adapter="qwen2-vl", max_tokens=16, batch_size=8, concurrency=4, repeats=1,
                                    engine_arg=["max_num_seqs=8"])
    found = bench.bench_fake(args, dataset)
    assert found["samples"] > 8 and len(found["runs_s"]) == 1
    cfg = bench._cfg(dataset, str(tmp_path / "out"), args, "vllm", "tiny")
    assert cfg.engine_arg == ("max_num_seqs=8",)
    assert not bench._cfg(dataset, str(tmp_path / "o2"), args, "openai", "tiny", "--base-url",
                          "http://127.0.0.1:9/v1").engine_arg


def test_code_shape_counts_templates_apart_from_python_code():
    """Jinja2 templates ship in the wheel but are words, not code: code_shape counts their non-blank
    lines on their own line and leaves them out of the code lines (and of radon)."""
    pytest.importorskip("radon")
    code_shape = load_script("code_shape")
    lines, grades, _ = code_shape.shape({"pkg/a.py": '"""Doc."""\nx = 1\n# note\n\ndef f():\n    return x\n',
                                         "pkg/a.md.j2": "{% if x %}\n\nwords\n{% endif %}\n"})
    assert lines["pkg"] == 3 and lines[code_shape.TEMPLATE_LINES] == 3
    assert sum(grades.values()) == 1
    installed = code_shape.sources()
    assert {"report/stats.md.j2", "transforms/generate/card.md.j2"} <= set(installed)


def test_graph_build_builds_the_three_graphs_it_measures(tiny_demo, tmp_path):
    bench = load_script("graph_build")
    graphs = bench.graphs(tiny_demo[0], str(tmp_path))
    assert sorted(graphs) == ["generate", "score", "stats"]
    for name, add in graphs.items():
        for type_check in (False, True):
            seconds, proto = bench.build_seconds(add, type_check)
            pardos = [t for t in proto.components.transforms.values()
                      if not t.subtransforms and t.spec.urn == "beam:transform:pardo:v1"]
            assert seconds > 0 and pardos, name
