"""Model adapters: box formats, question rewriting, messages, registry."""
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sarchat.transforms.adapters import ADAPTERS, get_adapter, guess_adapter
from sarchat.inference.dataset import image_data_url

QUESTION = "[identify] What is the object in {<100><50><200><150>}?"
W, H = 400, 200


def test_registry_and_declared_box_formats():
    assert set(ADAPTERS) == {"qwen2-vl", "qwen2.5-vl", "internvl", "llava-1.5", "phi-3.5-vision",
                             "deepseek-vl2", "sarchat", "llava-1.5-native", "deepseek-vl2-native", "qwen3-vl",
                             "internvl3", "glm-4.1v", "gemma-3", "minicpm-v", "kimi-vl", "llava-onevision",
                             "paligemma"}
    assert get_adapter("qwen2-vl").box_format.spec == "qwen2-vl"
    assert get_adapter("qwen2-vl").box_format.scale == 1000
    assert get_adapter("qwen2.5-vl").box_format.spec == "json-bbox2d:pixels"
    assert get_adapter("internvl").box_format.spec == "internvl"
    for name in ("llava-1.5", "phi-3.5-vision", "deepseek-vl2", "sarchat"):
        assert get_adapter(name).box_format.spec == "canonical"
    with pytest.raises(ValueError):
        get_adapter("gpt-17")


@pytest.mark.parametrize("name, expected", [
    ("qwen2-vl", "<|box_start|>(250,250),(500,750)<|box_end|>"),
    ("internvl", "<box>[[250, 250, 500, 750]]</box>"),
    ("qwen2.5-vl", '{"bbox_2d": [100, 50, 200, 150]}'),
    ("llava-1.5", "{<100><50><200><150>}"),
    ("sarchat", "{<100><50><200><150>}"),
])
def test_question_boxes_rewritten_and_parse_back(name, expected):
    adapter = get_adapter(name)
    text = adapter.convert_question(QUESTION, W, H)
    assert text == f"[identify] What is the object in {expected}?"
    (box,) = adapter.parse_boxes(text, W, H)
    assert box == pytest.approx([100, 50, 200, 150], abs=0.5)


def test_image_tag_is_not_sent_as_text():
    adapter = get_adapter("qwen2-vl")
    assert adapter.convert_question("<image>\nWhat is this?", W, H) == "What is this?"


def test_messages_have_one_image_part_then_text():
    adapter = get_adapter("internvl")
    row = {"question": QUESTION, "task": "identify", "width": W, "height": H}
    msgs = adapter.build_messages(row, "data:image/png;base64,AAAA")
    assert msgs == [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "text", "text": "[identify] What is the object in <box>[[250, 250, 500, 750]]</box>?\n"
                                 "Write every bounding box as <box>[[x1, y1, x2, y2]]</box> with coordinates "
                                 "normalised to 0-1000."},
    ]}]


def test_format_hint_only_for_box_tasks_and_zero_shot_models():
    row = {"question": "What kind of targets are in this SAR image?", "task": "classify", "width": W, "height": H}
    assert get_adapter("qwen2-vl").user_text(row) == row["question"]
    row = dict(row, task="count", question="[count] How many ships are there?")
    assert "0-1000" in get_adapter("qwen2-vl").user_text(row)
    assert "400x200" in get_adapter("llava-1.5").user_text(row)
    assert get_adapter("sarchat").user_text(row) == row["question"]
    assert get_adapter("qwen2-vl").user_text(row, use_hint=False) == row["question"]


def test_family_with_other_box_format():
    a = get_adapter("qwen2-vl:canonical")
    assert a.name == "qwen2-vl:canonical"
    assert a.box_format.spec == "canonical" and not a.format_hint
    assert a.sampling_overrides == {"skip_special_tokens": False}
    b = get_adapter("internvl:json-bbox2d:1000")
    assert b.box_format.spec == "json-bbox2d:1000"
    assert get_adapter(a.name).spec == a.spec  # the scorer resolves the recorded name identically


@pytest.mark.parametrize("model, name", [
    ("Qwen/Qwen2-VL-7B-Instruct", "qwen2-vl"),
    ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2.5-vl"),
    ("OpenGVLab/InternVL2_5-8B", "internvl"),
    ("llava-hf/llava-1.5-7b-hf", "llava-1.5"),
    ("microsoft/Phi-3.5-vision-instruct", "phi-3.5-vision"),
    ("deepseek-ai/deepseek-vl2-tiny", "deepseek-vl2"),
    ("/ckpt/my-finetune", "sarchat"),
])
def test_guess_adapter(model, name):
    assert guess_adapter(model) == name


def test_clean_output_strips_end_markers():
    a = get_adapter("qwen2-vl")
    assert a.clean_output("There is 1 instance. <|box_start|>(1,2),(3,4)<|box_end|><|im_end|>\n") == \
        "There is 1 instance. <|box_start|>(1,2),(3,4)<|box_end|>"


def test_qwen25_padding_keeps_pixel_frame():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, size=(250, 300), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    url = image_data_url(buf.getvalue(), pad_to_multiple=get_adapter("qwen2.5-vl").pad_to_multiple)
    import base64

    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert img.size == (308, 252)
    out = np.asarray(img)
    assert np.array_equal(out[:250, :300], arr) and out[250:].max() == 0 and out[:, 300:].max() == 0
    # an unpadded PNG goes out byte for byte
    assert image_data_url(buf.getvalue()).endswith(base64.b64encode(buf.getvalue()).decode())


def test_importing_inference_never_imports_vllm_or_torch():
    code = ("import sys, sarchat.inference.run, sarchat.transforms.adapters, sarchat.inference.backends.vllm_backend, "
            "sarchat.inference.backends.openai_backend, sarchat.inference.backends.cfar_backend; "
            "bad = [m for m in ('vllm', 'torch') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
