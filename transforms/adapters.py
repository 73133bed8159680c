"""Model adapters: how each VLM family is prompted and how it writes boxes. Pure, no vLLM.

An adapter knows
  * the box format the model writes (`box_format`, a sarchat.transforms.box_formats.BoxFormat); the scorer
    reads a run's answers with `get_adapter(manifest["adapter"]).box_format`;
  * how our pixel boxes in a question are rewritten into the model's coordinate form
    (`convert_question`);
  * the chat messages (OpenAI style, one `image_url` part plus the text) handed to vllm's
    `LLM.chat` or to a served `/v1/chat/completions` endpoint (`build_messages`); the image
    placeholder token of each model (`<image>`, `<|image_1|>`, `<|vision_start|>...`) is inserted by
    the model's chat template from the `image_url` part, never written by us;
  * model-specific engine settings (`engine_kwargs`), a chat template where the checkpoint ships
    none (`chat_template`), sampling overrides (grounding tokens such as `<|box_start|>` and `<box>`
    are special tokens, so those adapters keep special tokens in the output), and an optional
    image preprocessing step (`pad_to_multiple`, see Qwen2.5-VL below).

Box conventions (docs/rules.md section 11; the scale is declared here, never guessed from the values):
  qwen2-vl      <|box_start|>(x1,y1),(x2,y2)<|box_end|>, 0..1000 of the image
  qwen2.5-vl    {"bbox_2d": [x1, y1, x2, y2]} in absolute pixels of the image the model sees.
                The Qwen2.5-VL processor resizes every image to multiples of 28 px, so its pixel
                frame differs from ours (800 px -> 812 px). We pad the image on the right and bottom
                to the next multiple of 28 (`pad_to_multiple=28`), which the processor then leaves
                unscaled (as long as the padded image stays within `max_pixels`, set in
                engine_kwargs), so the model's pixels are our pixels and `json-bbox2d:pixels` holds.
  internvl      <box>[[x1, y1, x2, y2]]</box>, 0..1000 of the image (InternVL2/2.5 convention)
  llava-1.5, phi-3.5-vision, deepseek-vl2
                canonical {<x1><y1><x2><y2>} in pixels. Their native conventions (LLaVA-1.5's
                [0..1] floats, DeepSeek-VL2's <|det|>[[..]]<|/det|> in 0..999) have no BoxFormat
                in sarchat.transforms.box_formats, and the paper fine-tunes these models on our canonical
                answers, so canonical is what a benchmarked checkpoint writes. For a zero-shot run
                the format hint (below) asks for canonical pixels and states the image size.
  sarchat       canonical, no hint: a model fine-tuned on our corpus (the ms-swift export).

A family checkpoint fine-tuned on our corpus answers in canonical boxes; name it
`<adapter>:<box format spec>`, e.g. `qwen2-vl:canonical` or `internvl:json-bbox2d:1000`: the
family's prompting with the given box format, and no format hint. `get_adapter` accepts such names,
so the scorer resolves them the same way.

Format hint: zero-shot adapters append one sentence to the question of the tasks that involve boxes
(count, grounding, identify, refer) saying how to write a box. It is part of the prompt, so it is
part of the sampling hash (`prompt_spec`); `--no-format-hint` switches it off.
"""
import re
from dataclasses import dataclass, field, replace

from sarchat.transforms.box_formats import BoxFormat, get_box_format
from sarchat.transforms.errors import InputError
from sarchat.transforms.tasks import BOX_TASKS

# Bump when the prompt construction changes: it is part of the run key, so old results are not
# mixed with new ones.
PROMPT_VERSION = 1


# Canonical boxes in our questions: {<x1><y1><x2><y2>} (bounded quantifiers, linear time).
_CANONICAL_BOX = re.compile(r"\{<(-?\d{1,7}(?:\.\d{1,8})?)><(-?\d{1,7}(?:\.\d{1,8})?)>"
                            r"<(-?\d{1,7}(?:\.\d{1,8})?)><(-?\d{1,7}(?:\.\d{1,8})?)>\}")
_IMAGE_TAG = re.compile(r"^\s{0,4}<image>\s{0,4}\n?")

# End-of-turn markers a model may leave in its text when special tokens are kept.
END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<|end|>", "</s>", "<\uff5cend\u2581of\u2581sentence\uff5c>",
               "<|eot_id|>")

# Chat templates for checkpoints that ship none (string content format: vLLM renders the image
# part as the model's placeholder followed by a newline and the text).
DEEPSEEK_VL2_TEMPLATE = (
    "{%- set sys = '' -%}"
    "{%- if messages[0]['role'] == 'system' -%}{%- set sys = messages[0]['content'] -%}"
    "{%- set messages = messages[1:] -%}{%- endif -%}"
    "{{ bos_token }}{{ sys }}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}{{ '<|User|>: ' + m['content'] + '\\n\\n' }}"
    "{%- else -%}{{ '<|Assistant|>: ' + m['content'] + eos_token + '\\n\\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|Assistant|>:' }}{%- endif -%}"
)
LLAVA_15_TEMPLATE = (
    "{%- set sys = '' -%}"
    "{%- if messages[0]['role'] == 'system' -%}{%- set sys = messages[0]['content'] + ' ' -%}"
    "{%- set messages = messages[1:] -%}{%- endif -%}"
    "{{ sys }}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}{{ 'USER: ' + m['content'] | trim + '\\n' }}"
    "{%- else -%}{{ 'ASSISTANT: ' + m['content'] | trim + eos_token + '\\n' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)


@dataclass(frozen=True, eq=False)
class Adapter:
    """How one model family is prompted and how it writes boxes."""

    name: str                     # registry name, recorded in the run manifest
    family: str                   # human-readable family
    default_model: str            # the checkpoint the paper's table refers to (HF id)
    box_format: BoxFormat         # how the scorer reads this model's answers
    format_hint: bool = True      # append the box-format sentence to box tasks (zero-shot models)
    system_prompt: str = None     # a system message, when the model needs one
    chat_template: str = None     # jinja template when the checkpoint ships none
    pad_to_multiple: int = 0      # pad images right/bottom to this multiple (Qwen2.5-VL: 28)
    engine_kwargs: dict = field(default_factory=dict)     # vllm.LLM(...) extras
    sampling_overrides: dict = field(default_factory=dict)  # vllm.SamplingParams extras
    stop: tuple = ()              # stop strings
    aliases: tuple = ()           # model-name substrings that select this adapter

    # ---- prompt construction -------------------------------------------------------------
    def convert_question(self, question: str, width: int, height: int) -> str:
        """Our question with its canonical pixel boxes rewritten in the model's box form."""
        text = _IMAGE_TAG.sub("", question or "", count=1)
        if self.box_format.name == "canonical":
            return text

        def repl(m):
            box = [float(v) for v in m.groups()]
            return self.box_format.render_one(box, width, height)

        return _CANONICAL_BOX.sub(repl, text)

    def hint(self, width: int, height: int) -> str:
        """The sentence that tells a zero-shot model how to write boxes."""
        bf = self.box_format
        if bf.name == "qwen2-vl":
            return ("Write every bounding box as <|box_start|>(x1,y1),(x2,y2)<|box_end|> with "
                    "coordinates normalised to 0-1000.")
        if bf.name == "internvl":
            return "Write every bounding box as <box>[[x1, y1, x2, y2]]</box> with coordinates normalised to 0-1000."
        if bf.name == "json-bbox2d":
            if bf.scale:
                scale = int(bf.scale) if float(bf.scale).is_integer() else bf.scale
                return f'Write every bounding box as {{"bbox_2d": [x1, y1, x2, y2]}} with coordinates normalised to 0-{scale}.'
            return (f'Write every bounding box as {{"bbox_2d": [x1, y1, x2, y2]}} in absolute pixel '
                    f"coordinates of this {width}x{height} image.")
        return (f"Write every bounding box as {{<x1><y1><x2><y2>}} in absolute pixel coordinates of "
                f"this {width}x{height} image (x to the right, y down, origin at the top left).")

    def user_text(self, row, use_hint: bool = True) -> str:
        """The text part of the user turn for a dialogue row (dict with question, task, width, height)."""
        width, height = int(row["width"]), int(row["height"])
        text = self.convert_question(row["question"], width, height)
        if use_hint and self.format_hint and row.get("task") in BOX_TASKS:
            text = f"{text}\n{self.hint(width, height)}"
        return text

    def build_messages(self, row, image_url: str, use_hint: bool = True):
        """OpenAI-style chat messages: optional system turn, then image part + text part."""
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_url}},
            {"type": "text", "text": self.user_text(row, use_hint)},
        ]})
        return messages

    # ---- answers ---------------------------------------------------------------------------
    def clean_output(self, text: str) -> str:
        """Model text with trailing end-of-turn markers removed (kept when special tokens are kept)."""
        text = text or ""
        changed = True
        while changed:
            changed = False
            stripped = text.rstrip()
            for marker in END_MARKERS:
                if stripped.endswith(marker):
                    text = stripped[: -len(marker)]
                    changed = True
        return text.strip()

    def parse_boxes(self, text: str, width: int, height: int):
        """Pixel xyxy boxes in an answer, read in this adapter's declared format."""
        return self.box_format.parse(text, width, height)

    # ---- identity --------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        """Everything about the prompt that changes the model's input (part of the run key)."""
        return (f"{self.name}|box={self.box_format.spec}|hint={int(self.format_hint)}|"
                f"sys={self.system_prompt or ''}|pad={self.pad_to_multiple}|"
                f"tmpl={'custom' if self.chat_template else 'model'}|v{PROMPT_VERSION}")


_QWEN_MM = {"min_pixels": 28 * 28, "max_pixels": 1280 * 28 * 28}

ADAPTERS = {
    a.name: a
    for a in (
        Adapter(
            name="qwen2-vl", family="Qwen2-VL", default_model="Qwen/Qwen2-VL-7B-Instruct",
            box_format=get_box_format("qwen2-vl"),
            engine_kwargs={"max_model_len": 8192, "mm_processor_kwargs": dict(_QWEN_MM)},
            sampling_overrides={"skip_special_tokens": False},
            aliases=("qwen2-vl", "qwen2_vl", "qwen2vl"),
        ),
        Adapter(
            name="qwen2.5-vl", family="Qwen2.5-VL", default_model="Qwen/Qwen2.5-VL-7B-Instruct",
            box_format=get_box_format("json-bbox2d:pixels"),
            pad_to_multiple=28,
            # max_pixels large enough that padded SAR tiles (<= 1280 px a side) are never rescaled.
            engine_kwargs={"max_model_len": 8192,
                           "mm_processor_kwargs": {"min_pixels": 28 * 28, "max_pixels": 1288 * 1288}},
            aliases=("qwen2.5-vl", "qwen2_5-vl", "qwen2_5_vl", "qwen2.5vl"),
        ),
        Adapter(
            name="internvl", family="InternVL2.5", default_model="OpenGVLab/InternVL2_5-8B",
            box_format=get_box_format("internvl"),
            engine_kwargs={"max_model_len": 8192, "trust_remote_code": True},
            sampling_overrides={"skip_special_tokens": False},
            stop=("<|im_end|>", "<|endoftext|>", "<|end|>"),
            aliases=("internvl",),
        ),
        Adapter(
            name="llava-1.5", family="LLaVA-1.5", default_model="llava-hf/llava-1.5-7b-hf",
            box_format=get_box_format("canonical"),
            chat_template=LLAVA_15_TEMPLATE,
            engine_kwargs={"max_model_len": 4096},
            aliases=("llava-1.5", "llava_1.5", "llava-v1.5", "llava1.5"),
        ),
        Adapter(
            name="phi-3.5-vision", family="Phi-3.5-vision", default_model="microsoft/Phi-3.5-vision-instruct",
            box_format=get_box_format("canonical"),
            # num_crops=16 is Microsoft's recommendation for single-image prompts.
            engine_kwargs={"max_model_len": 8192, "trust_remote_code": True,
                           "mm_processor_kwargs": {"num_crops": 16}},
            stop=("<|end|>", "<|endoftext|>"),
            aliases=("phi-3.5-vision", "phi-3.5-v", "phi3.5-vision", "phi-3-vision", "phi3_v"),
        ),
        Adapter(
            name="deepseek-vl2", family="DeepSeek-VL2", default_model="deepseek-ai/deepseek-vl2-tiny",
            box_format=get_box_format("canonical"),
            chat_template=DEEPSEEK_VL2_TEMPLATE,
            engine_kwargs={"max_model_len": 4096,
                           "hf_overrides": {"architectures": ["DeepseekVLV2ForCausalLM"]}},
            aliases=("deepseek-vl2", "deepseek_vl2", "deepseek-vl-2"),
        ),
        Adapter(
            name="sarchat", family="fine-tuned on SARChat (canonical)", default_model="",
            box_format=get_box_format("canonical"), format_hint=False,
            aliases=("sarchat",),
        ),
    )
}


def get_adapter(name: str) -> Adapter:
    """Adapter by registry name, or `NAME:BOXSPEC` for a family checkpoint fine-tuned to another format.

    `get_adapter("qwen2-vl").box_format` -> qwen2-vl 0..1000; `get_adapter("qwen2-vl:canonical")`
    -> Qwen2-VL prompting, canonical pixel boxes, no format hint.
    """
    base, sep, box_spec = (name or "").partition(":")
    key = base.strip().lower()
    if key not in ADAPTERS:
        raise InputError(f"unknown adapter {name!r}; known: {', '.join(ADAPTERS)} "
                         f"(optionally NAME:BOXFORMAT, e.g. qwen2-vl:canonical)")
    adapter = ADAPTERS[key]
    if sep:
        try:
            bf = get_box_format(box_spec)
        except ValueError as exc:
            raise InputError(f"adapter {name!r}: {exc}") from None
        overrides = dict(adapter.sampling_overrides)
        adapter = replace(adapter, name=f"{key}:{bf.spec}", box_format=bf, format_hint=False,
                          pad_to_multiple=adapter.pad_to_multiple if bf.name == "json-bbox2d" and not bf.scale else 0,
                          sampling_overrides=overrides)
    return adapter


def processor_kwargs(kwargs: dict, legacy: bool = False) -> dict:
    """mm_processor_kwargs in the form a transformers version reads.

    Qwen-VL image processors take the pixel budget as size={"shortest_edge": MIN, "longest_edge":
    MAX}; transformers 5 deprecates the older min_pixels=/max_pixels= keywords, which transformers
    4.x processors read. The adapters declare min_pixels/max_pixels (either form is accepted from
    --engine-arg too); `legacy=False` rewrites them as `size`, `legacy=True` the other way round.
    Other keys pass unchanged."""
    out = dict(kwargs or {})
    size = dict(out["size"]) if isinstance(out.get("size"), dict) else None
    low, high = out.pop("min_pixels", None), out.pop("max_pixels", None)
    if legacy:
        if size is not None and {"shortest_edge", "longest_edge"} >= set(size):
            low = size.get("shortest_edge", low)
            high = size.get("longest_edge", high)
            del out["size"]
        if low is not None:
            out["min_pixels"] = low
        if high is not None:
            out["max_pixels"] = high
        return out
    if low is not None or high is not None:
        size = dict(size or {})
        if low is not None:
            size["shortest_edge"] = low
        if high is not None:
            size["longest_edge"] = high
        out["size"] = size
    return out


def guess_adapter(model: str) -> str:
    """Adapter name from a model name or path ('Qwen/Qwen2-VL-7B-Instruct' -> 'qwen2-vl');
    'sarchat' when nothing matches (a checkpoint fine-tuned on our corpus)."""
    low = (model or "").lower()
    # Longer aliases first, so 'qwen2.5-vl' is not taken for 'qwen2-vl'.
    pairs = sorted(((alias, a.name) for a in ADAPTERS.values() for alias in a.aliases),
                   key=lambda p: -len(p[0]))
    for alias, name in pairs:
        if alias in low:
            return name
    return "sarchat"
