"""Adapters as data: the built-in adapters are JSON files, a user adds a family with
`--adapter path.json`, the file's digest is part of the run key, a bad file is one line (exit 2)."""
import json
import os

import pyarrow.parquet as pq
import pytest

from sarchat.inference.backends.base import Backend, Result
from sarchat.inference.run import Runner, parse_config
from tests.fixture_dataset import write_fixture_dataset
from sarchat.transforms import adapters as A
from sarchat.transforms.errors import InputError
from sarchat.transforms.score.box_format_choice import resolve_box_format
from tests.helpers import infer as run

USER = {
    "sarchat_adapter": 1,
    "name": "my-vlm",
    "family": "My VLM",
    "default_model": "me/my-vlm-2b",
    "box_format": "glm-box",
    "format_hint": "Boxes as <|begin_of_box|>[x1, y1, x2, y2]<|end_of_box|>, 0-1000 of this {width}x{height} image.",
    "system_prompt": "You look at SAR images.",
    "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
    "engine": {"max_model_len": 2048},
    "sampling": {"skip_special_tokens": False},
    "stop": ["<|user|>"],
}


class EchoBackend(Backend):
    """A CPU stand-in for an engine: answers with the user turn the adapter built (so the test sees
    the prompt) and one box in the adapter's own format."""

    name = "echo"
    reads_images = False

    def fingerprint(self):
        return {"kind": "echo"}

    def sampling(self):
        return {"stop": list(self.adapter.stop), **self.adapter.sampling_overrides}

    def predict(self, samples):
        out = []
        for s in samples:
            row = s.row
            box = self.adapter.box_format.render_one([1, 2, 30, 40], int(row["width"]), int(row["height"]))
            out.append(Result(prediction=f"{self.adapter.user_text(row)} => {box}"))
        return out


BACKEND = f"{__name__}:EchoBackend"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    generated, _, _ = write_fixture_dataset(str(tmp_path_factory.mktemp("adapters")), n_images=1, seed=3)
    return generated


def _write(path, obj):
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj, encoding="utf-8")
    return str(path)


def test_builtin_adapters_are_files_and_keep_their_prompt_specs():
    files = sorted(f[:-5] for f in os.listdir(A.ADAPTER_DIR) if f.endswith(".json"))
    assert files == sorted(A.ADAPTERS)
    # the families that existed before they became files keep their specs, so their run keys
    for name, spec in {
        "qwen2-vl": "qwen2-vl|box=qwen2-vl|hint=1|sys=|pad=0|tmpl=model|v1",
        "qwen2.5-vl": "qwen2.5-vl|box=json-bbox2d:pixels|hint=1|sys=|pad=28|tmpl=model|v1",
        "llava-1.5": "llava-1.5|box=canonical|hint=1|sys=|pad=0|tmpl=custom|v1",
        "sarchat": "sarchat|box=canonical|hint=0|sys=|pad=0|tmpl=model|v1",
    }.items():
        assert A.get_adapter(name).spec == spec
    assert A.get_adapter("qwen2-vl").engine_kwargs == {
        "max_model_len": 8192, "mm_processor_kwargs": {"min_pixels": 784, "max_pixels": 1003520}}
    assert A.get_adapter("deepseek-vl2").chat_template.startswith("{%- set sys = '' -%}")
    for a in A.ADAPTERS.values():
        assert a.source is None and a.digest is None  # built in: named, not digested


@pytest.mark.parametrize("name, box", [
    ("qwen3-vl", "json-bbox2d:1000"), ("internvl3", "internvl"), ("glm-4.1v", "glm-box"),
    ("gemma-3", "yxyx:1000"), ("minicpm-v", "canonical"), ("kimi-vl", "canonical"),
    ("llava-onevision", "xyxy:1"), ("paligemma", "paligemma-loc"), ("llava-1.5-native", "xyxy:1"),
    ("deepseek-vl2-native", "deepseek-det"),
])
def test_todays_families_declare_their_box_format(name, box):
    adapter = A.get_adapter(name)
    assert adapter.box_format.spec == box
    assert resolve_box_format(name).spec == box  # what `sarchat score --adapter NAME` reads with
    row = {"question": "[refer] Where is the ship {<100><50><200><150>}?", "task": "refer", "width": 400,
           "height": 200}
    text = adapter.user_text(row)
    # the question's box is rewritten into the family's form and reads back as the same pixels
    (back,) = adapter.parse_boxes(text, 400, 200)
    assert back == pytest.approx([100, 50, 200, 150], abs=1.0)


@pytest.mark.parametrize("model, name", [
    ("Qwen/Qwen3-VL-8B-Instruct", "qwen3-vl"), ("OpenGVLab/InternVL3_5-8B", "internvl3"),
    ("OpenGVLab/InternVL3-2B", "internvl3"), ("OpenGVLab/InternVL2_5-8B", "internvl"),
    ("zai-org/GLM-4.1V-9B-Thinking", "glm-4.1v"), ("google/gemma-3-4b-it", "gemma-3"),
    ("openbmb/MiniCPM-V-2_6", "minicpm-v"), ("moonshotai/Kimi-VL-A3B-Instruct", "kimi-vl"),
    ("llava-hf/llava-onevision-qwen2-7b-ov-hf", "llava-onevision"), ("google/paligemma2-3b-mix-448", "paligemma"),
])
def test_guess_todays_families(model, name):
    assert A.guess_adapter(model) == name


def test_user_adapter_file_reads_into_an_adapter(tmp_path):
    path = _write(tmp_path / "my.json", USER)
    a = A.get_adapter(path)
    assert (a.name, a.box_format.spec, a.system_prompt, a.stop) == ("my-vlm", "glm-box", "You look at SAR images.",
                                                                     ("<|user|>",))
    assert a.engine_kwargs == {"max_model_len": 2048} and a.sampling_overrides == {"skip_special_tokens": False}
    assert a.hint(640, 480) == "Boxes as <|begin_of_box|>[x1, y1, x2, y2]<|end_of_box|>, 0-1000 of this 640x480 image."
    assert a.digest and a.digest in a.spec and a.source == os.path.abspath(path)
    assert resolve_box_format(path).spec == "glm-box"  # `sarchat score --adapter my.json`


def test_user_adapter_file_through_sarchat_infer(dataset, tmp_path):
    path = _write(tmp_path / "my.json", USER)
    out = tmp_path / "run"
    assert run(["--dataset", dataset, "--output", str(out), "--backend", BACKEND, "--adapter", path,
                "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["adapter"], manifest["box_format"]) == ("my-vlm", "glm-box")
    assert manifest["adapter_file"] == os.path.abspath(path) and manifest["adapter_digest"] in manifest["prompt_spec"]
    rows = pq.read_table(out / "predictions.parquet").to_pylist()
    assert rows and all(r["error"] is None for r in rows)
    assert any("0-1000 of this" in r["prediction"] for r in rows)  # the file's own hint sentence
    assert all("<|begin_of_box|>" in r["prediction"] for r in rows)
    assert all("You look at SAR" not in r["prediction"] for r in rows)  # the system turn is not user text


def test_the_files_digest_is_part_of_the_run_key(dataset, tmp_path):
    def key(obj, name):
        path = _write(tmp_path / name, obj)
        return Runner(parse_config(["--dataset", dataset, "--output", str(tmp_path / "o"), "--backend", BACKEND,
                                    "--adapter", path])).key

    base = key(USER, "a.json")
    assert key(USER, "b.json") == base  # the same bytes elsewhere: the same run
    assert key(dict(USER, notes="a new note"), "c.json") != base  # any edit: a new run
    assert key(dict(USER, stop=["<|user|>", "<|observation|>"]), "d.json") != base
    # a user file with a built-in's content is still told apart from the built-in by its digest
    builtin = json.loads(open(os.path.join(A.ADAPTER_DIR, "qwen2-vl.json"), encoding="utf-8").read())
    path = _write(tmp_path / "q.json", builtin)
    assert A.get_adapter(path).spec != A.get_adapter("qwen2-vl").spec


BAD = [
    ("{not json", "not a JSON object"),
    ("[1, 2]", "Expected `object`, got `array`"),
    (dict(USER, box_format="bogus"), "field `box_format`: unknown box format 'bogus'"),
    (dict(USER, box_format="xyxy:0"), "field `box_format`: xyxy scale must be"),
    (dict(USER, pad_to_multiple="28"), "field `pad_to_multiple`: Expected `int`, got `str`"),
    (dict(USER, pad_to_multiple=-1), "field `pad_to_multiple`: must be >= 0"),
    (dict(USER, stop="<|user|>"), "field `stop`: Expected `array`, got `str`"),
    (dict(USER, engine=[1]), "field `engine`: Expected `object`, got `array`"),
    (dict(USER, colour="red"), "field `colour`: unknown field"),
    ({k: v for k, v in USER.items() if k != "box_format"}, "field `box_format`: missing"),
    (dict(USER, name="My VLM"), "field `name`: 1-64 lower-case letters"),
    (dict(USER, format_hint=" "), "field `format_hint`: an empty sentence"),
    (dict(USER, sarchat_adapter=2), "field `sarchat_adapter`: this version reads format 1, got 2"),
]


@pytest.mark.parametrize("content, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_a_bad_adapter_file_is_one_line_naming_file_and_field_exit_2(dataset, tmp_path, capsys, content, message):
    path = _write(tmp_path / "bad.json", content)
    with pytest.raises(InputError, match="adapter file "):
        A.get_adapter(path)
    out = tmp_path / "out"
    assert run(["--dataset", dataset, "--output", str(out), "--backend", BACKEND, "--adapter", path, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sarchat infer: error: argument --adapter: adapter file {path}: "), err
    assert message in err, err
    assert err.count("\n") == 1 and not out.exists()


def test_a_missing_adapter_file_is_one_line(dataset, tmp_path, capsys):
    assert run(["--dataset", dataset, "--output", str(tmp_path / "o"), "--backend", BACKEND, "--adapter",
                str(tmp_path / "none.json"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "adapter file" in err and "none.json: cannot be read" in err and err.count("\n") == 1


def test_end_of_turn_markers_of_todays_families_are_stripped():
    assert A.get_adapter("gemma-3").clean_output('{"box_2d": [1, 2, 3, 4]}<end_of_turn>\n') == '{"box_2d": [1, 2, 3, 4]}'
    assert A.get_adapter("glm-4.1v").clean_output(
        "<|begin_of_box|>[1, 2, 3, 4]<|end_of_box|><|user|>") == "<|begin_of_box|>[1, 2, 3, 4]<|end_of_box|>"


def test_the_beam_handler_carries_a_user_adapter_to_workers_that_lack_the_file(tmp_path):
    import pickle

    from sarchat.inference import beam_handler as bh
    from sarchat.inference.config import InferenceConfig
    from tests.fake_vllm import FakeLLM, FakeSamplingParams

    path = tmp_path / "my.json"
    _write(path, USER)
    config = InferenceConfig(model="me/my-vlm-2b", adapter=str(path))
    handler = bh.SarchatVLMModelHandler(config, "/data", engine_factory=FakeLLM, sampling_params_cls=FakeSamplingParams,
                                        large_model=False)
    shipped = pickle.dumps(handler)
    path.unlink()  # a Dataflow worker has no copy of the file
    backend = pickle.loads(shipped).load_model()
    assert backend.adapter.name == "my-vlm" and backend.adapter.digest == handler.adapter.digest
    assert backend.adapter.box_format.spec == "glm-box" and backend.adapter.stop == ("<|user|>",)
