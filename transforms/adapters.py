"""Model adapters: how each VLM family is prompted and how it writes boxes. Pure, no vLLM.

Adapters are data: each is one small JSON file (an "adapter file"), decoded into the typed
`AdapterFile` record and turned into an `Adapter`. The built-in ones are the files in
`transforms/adapter_files/*.json` (installed as sarchat/transforms/adapter_files/); a user adds a
family without code by writing such a file and passing its path, `--adapter path/to/family.json`
(anything that ends in `.json` or holds a `/` is a path). A user file's sha256 digest is part of
its prompt spec, so of the run key: an edited file is a new run. The file format
(inference/README.md, "Adapter files"):

  sarchat_adapter   1 (the format version)
  name              registry name, recorded in the run manifest (required)
  box_format        box format spec of sarchat.transforms.box_formats (required)
  format_hint       true: the box format's own sentence; false: none; a string: that sentence
                    ({width} and {height} are the image's size)
  family, default_model, notes     for people
  system_prompt, chat_template     a system turn; a jinja chat template where the checkpoint
                                   ships none (string content format)
  pad_to_multiple   pad images right/bottom to this multiple (Qwen2.5-VL: 28)
  engine            vllm.LLM(...) extras (max_model_len, mm_processor_kwargs, trust_remote_code, ...)
  sampling          vllm.SamplingParams extras (skip_special_tokens: false for special-token boxes)
  stop              stop strings
  aliases           model-name substrings that select this adapter when --adapter is not given

An adapter knows
  * the box format the model writes (`box_format`, a sarchat.transforms.box_formats.BoxFormat); the scorer
    reads a run's answers with the `box_format` spec its manifest records;
  * how our pixel boxes in a question are rewritten into the model's coordinate form
    (`convert_question`);
  * the chat messages (OpenAI style, one `image_url` part plus the text) handed to vllm's
    `LLM.chat` or to a served `/v1/chat/completions` endpoint (`build_messages`); the image
    placeholder token of each model (`<image>`, `<|image_1|>`, `<|vision_start|>...`) is inserted by
    the model's chat template from the `image_url` part, never written by us;
  * model-specific engine settings (`engine_kwargs`), a chat template where the checkpoint ships
    none (`chat_template`), sampling overrides (grounding tokens such as `<|box_start|>` and `<box>`
    are special tokens, so those adapters keep special tokens in the output), and an optional
    image preprocessing step (`pad_to_multiple`, see qwen2.5-vl.json).

Box conventions (docs/rules.md section 12; the scale is declared by the adapter, never guessed from
the values): each file's `box_format` and `notes` say what its family writes. The paper fine-tunes
LLaVA-1.5 and DeepSeek-VL2 on our canonical answers, so `llava-1.5` and `deepseek-vl2` read
canonical pixels (the hint asks for them and states the image size); `llava-1.5-native` and
`deepseek-vl2-native` read what those models write zero-shot ([0..1] floats, `<|det|>` on 0..999).

A family checkpoint fine-tuned on our corpus answers in canonical boxes; name it
`<adapter>:<box format spec>`, e.g. `qwen2-vl:canonical` or `internvl:json-bbox2d:1000`: the
family's prompting with the given box format, and no format hint. `get_adapter` accepts such names,
so the scorer resolves them the same way.

Format hint: zero-shot adapters append one sentence to the question of the tasks that involve boxes
(count, grounding, identify, refer) saying how to write a box. It is part of the prompt, so it is
part of the sampling hash (`prompt_spec`); `--no-format-hint` switches it off.
"""
import hashlib
import os
import re
from dataclasses import dataclass, field, replace
from typing import Optional, Union

import msgspec

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
               "<|eot_id|>", "<end_of_turn>", "<eos>", "<|user|>")


@dataclass(frozen=True, eq=False)
class Adapter:
    """How one model family is prompted and how it writes boxes."""

    name: str                     # registry name, recorded in the run manifest
    family: str                   # human-readable family
    default_model: str            # the checkpoint the paper's table refers to (HF id)
    box_format: BoxFormat         # how the scorer reads this model's answers
    format_hint: bool = True      # append the box-format sentence to box tasks (zero-shot models)
    system_prompt: Optional[str] = None  # a system message, when the model needs one
    chat_template: Optional[str] = None  # jinja template when the checkpoint ships none
    pad_to_multiple: int = 0      # pad images right/bottom to this multiple (Qwen2.5-VL: 28)
    engine_kwargs: dict = field(default_factory=dict)     # vllm.LLM(...) extras
    sampling_overrides: dict = field(default_factory=dict)  # vllm.SamplingParams extras
    stop: tuple = ()              # stop strings
    aliases: tuple = ()           # model-name substrings that select this adapter
    hint_text: Optional[str] = None  # the file's own hint sentence ({width}, {height}), else the format's
    source: Optional[str] = None  # the user adapter file it was read from (None: built in)
    digest: Optional[str] = None  # sha256 of that file's bytes (part of the prompt spec)

    # ---- prompt construction -------------------------------------------------------------
    def convert_question(self, question: str, width: int, height: int) -> str:
        """Our question with its canonical pixel boxes rewritten in the model's box form."""
        text = _IMAGE_TAG.sub("", question or "", count=1)
        if self.box_format.name == "canonical":
            return text
        render = self.box_format.render_one
        return _CANONICAL_BOX.sub(lambda m: render([float(v) for v in m.groups()], width, height), text)

    def hint(self, width: int, height: int) -> str:
        """The sentence that tells a zero-shot model how to write boxes."""
        text = self.hint_text or format_hint_sentence(self.box_format)
        return text.replace("{width}", str(width)).replace("{height}", str(height))

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
        text = (text or "").rstrip()
        while text.endswith(END_MARKERS):
            marker = next(m for m in END_MARKERS if text.endswith(m))
            text = text[:-len(marker)].rstrip()
        return text.strip()

    def parse_boxes(self, text: str, width: int, height: int):
        """Pixel xyxy boxes in an answer, read in this adapter's declared format."""
        return self.box_format.parse(text, width, height)

    # ---- identity --------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        """Everything about the prompt that changes the model's input (part of the run key)."""
        spec = (f"{self.name}|box={self.box_format.spec}|hint={int(self.format_hint)}|"
                f"sys={self.system_prompt or ''}|pad={self.pad_to_multiple}|"
                f"tmpl={'custom' if self.chat_template else 'model'}|v{PROMPT_VERSION}")
        if self.hint_text:
            spec += "|hint_text=" + hashlib.sha256(self.hint_text.encode("utf-8")).hexdigest()[:16]
        if self.digest:
            spec += f"|file={self.digest}"
        return spec


# The box each format's hint shows; the formats left out have a sentence of their own.
_HINT_BOX = {"qwen2-vl": "<|box_start|>(x1,y1),(x2,y2)<|box_end|>", "internvl": "<box>[[x1, y1, x2, y2]]</box>",
             "json-bbox2d": '{"bbox_2d": [x1, y1, x2, y2]}', "xyxy": "[x1, y1, x2, y2]",
             "yxyx": "[ymin, xmin, ymax, xmax]", "deepseek-det": "<|det|>[[x1, y1, x2, y2]]<|/det|>",
             "glm-box": "<|begin_of_box|>[x1, y1, x2, y2]<|end_of_box|>"}
_HINTS = {
    None: ("Write every bounding box as {<x1><y1><x2><y2>} in absolute pixel coordinates of this {width}x{height} "
           "image (x to the right, y down, origin at the top left)."),
    "paligemma-loc": ("Write every bounding box as four location tokens <locYMIN><locXMIN><locYMAX><locXMAX>, "
                      "each a four-digit bin from 0000 to 1023."),
    "florence-loc": "Write every bounding box as <loc_x1><loc_y1><loc_x2><loc_y2> with coordinates in bins 0-999.",
}


def format_hint_sentence(bf) -> str:
    """The built-in hint sentence of a box format ({width} and {height}: the image's size)."""
    box = _HINT_BOX.get(bf.name)
    if box is None:
        return _HINTS.get(bf.name, _HINTS[None])
    if not bf.scale:
        coordinates = "in absolute pixel coordinates of this {width}x{height} image"
    elif bf.scale == 1 and bf.name in ("xyxy", "yxyx"):
        coordinates = "with coordinates as fractions of the image size, from 0 to 1"
    else:
        scale = int(bf.scale) if float(bf.scale).is_integer() else bf.scale
        coordinates = f"with coordinates normalised to 0-{scale}"
    return f"Write every bounding box as {box} {coordinates}."


class AdapterFile(msgspec.Struct, forbid_unknown_fields=True):
    """An adapter file as written (inference/README.md, "Adapter files")."""

    name: str
    box_format: str
    sarchat_adapter: int = 1
    family: str = ""
    default_model: str = ""
    format_hint: Union[bool, str] = True
    system_prompt: Optional[str] = None
    chat_template: Optional[str] = None
    pad_to_multiple: int = 0
    engine: dict = {}
    sampling: dict = {}
    stop: list[str] = []
    aliases: list[str] = []
    notes: str = ""


ADAPTER_FILE_VERSION = 1
ADAPTER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "adapter_files")
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def adapter_from_bytes(data: bytes, where: str, source: Optional[str] = None) -> Adapter:
    """An Adapter from an adapter file's bytes; InputError naming `where` and the field when bad."""
    try:
        rec = msgspec.json.decode(data, type=AdapterFile)
    except msgspec.ValidationError as exc:
        raise InputError(f"adapter file {where}: {_field_message(exc)}") from None
    except msgspec.DecodeError as exc:
        raise InputError(f"adapter file {where}: not a JSON object ({exc})") from None

    def bad(field_name, why):
        return InputError(f"adapter file {where}: field `{field_name}`: {why}")

    if rec.sarchat_adapter != ADAPTER_FILE_VERSION:
        raise bad("sarchat_adapter", f"this version reads format {ADAPTER_FILE_VERSION}, got {rec.sarchat_adapter}")
    if not _NAME.fullmatch(rec.name):
        raise bad("name", f"1-64 lower-case letters, digits, '.', '_' or '-', got {rec.name!r}")
    try:
        box_format = get_box_format(rec.box_format)
    except ValueError as exc:
        raise bad("box_format", str(exc)) from None
    if rec.pad_to_multiple < 0:
        raise bad("pad_to_multiple", f"must be >= 0, got {rec.pad_to_multiple}")
    if isinstance(rec.format_hint, str) and not rec.format_hint.strip():
        raise bad("format_hint", "an empty sentence (use false for none)")
    digest = hashlib.sha256(data).hexdigest()[:16] if source else None
    return Adapter(
        name=rec.name, family=rec.family or rec.name, default_model=rec.default_model, box_format=box_format,
        format_hint=bool(rec.format_hint), system_prompt=rec.system_prompt or None,
        chat_template=rec.chat_template or None, pad_to_multiple=rec.pad_to_multiple,
        engine_kwargs=dict(rec.engine), sampling_overrides=dict(rec.sampling), stop=tuple(rec.stop),
        aliases=tuple(a.lower() for a in rec.aliases),
        hint_text=rec.format_hint if isinstance(rec.format_hint, str) else None, source=source, digest=digest)


def _field_message(exc) -> str:
    """msgspec's "Expected `int`, got `str` - at `$.pad_to_multiple`" as "field `pad_to_multiple`: ..."."""
    text = str(exc)
    msg, sep, at = text.rpartition(" - at `$.")
    if sep:
        return f"field `{at.rstrip('`')}`: {msg}"
    found = re.search(r"Object (contains unknown|missing required) field `([^`]*)`", text)
    if not found:
        return text
    if found.group(1) == "missing required":
        return f"field `{found.group(2)}`: missing (required)"
    return f"field `{found.group(2)}`: unknown field (known: {', '.join(AdapterFile.__struct_fields__)})"


def load_adapter_file(path: str) -> Adapter:
    """A user adapter file (`--adapter path.json`); InputError, one line naming the file, when bad."""
    try:
        with open(path, "rb") as fh:
            data = fh.read((1 << 20) + 1)
    except OSError as exc:
        raise InputError(f"adapter file {path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > 1 << 20:
        raise InputError(f"adapter file {path}: larger than 1 MiB")
    return adapter_from_bytes(data, path, source=os.path.abspath(path))


def is_adapter_path(name: str) -> bool:
    """Whether an --adapter value names a file rather than a registered adapter."""
    text = (name or "").strip()
    return text.lower().endswith(".json") or "/" in text or os.sep in text


# Listing order (help texts, error lines): the paper's families first, then the rest by name.
_FIRST = ("qwen2-vl", "qwen2.5-vl", "internvl", "llava-1.5", "phi-3.5-vision", "deepseek-vl2", "sarchat")


def _builtin_adapters() -> dict:
    found = {}
    rank = {name + ".json": i for i, name in enumerate(_FIRST)}
    names = sorted(os.listdir(ADAPTER_DIR), key=lambda f: (rank.get(f, len(rank)), f))
    for fname in names:
        if fname.endswith(".json"):
            with open(os.path.join(ADAPTER_DIR, fname), "rb") as fh:
                adapter = adapter_from_bytes(fh.read(), f"{fname} (built in)")
            if adapter.name + ".json" != fname:
                raise InputError(f"adapter file {fname} (built in): field `name` must be the file's name, "
                                 f"got {adapter.name!r}")
            found[adapter.name] = adapter
    return found


ADAPTERS = _builtin_adapters()


def get_adapter(name: str) -> Adapter:
    """Adapter by registry name, `NAME:BOXSPEC` for a family checkpoint fine-tuned to another format,
    or the path of an adapter file (`load_adapter_file`).

    `get_adapter("qwen2-vl").box_format` -> qwen2-vl 0..1000; `get_adapter("qwen2-vl:canonical")`
    -> Qwen2-VL prompting, canonical pixel boxes, no format hint.
    """
    if is_adapter_path(name):
        return load_adapter_file(name.strip())
    base, sep, box_spec = (name or "").partition(":")
    key = base.strip().lower()
    if key not in ADAPTERS:
        raise InputError(f"unknown adapter {name!r}; known: {', '.join(ADAPTERS)} "
                         f"(optionally NAME:BOXFORMAT, e.g. qwen2-vl:canonical, or an adapter file PATH.json)")
    adapter = ADAPTERS[key]
    if sep:
        try:
            bf = get_box_format(box_spec)
        except ValueError as exc:
            raise InputError(f"adapter {name!r}: {exc}") from None
        adapter = replace(adapter, name=f"{key}:{bf.spec}", box_format=bf, format_hint=False,
                          pad_to_multiple=adapter.pad_to_multiple if bf.name == "json-bbox2d" and not bf.scale else 0,
                          sampling_overrides=dict(adapter.sampling_overrides))
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
    if legacy and size is not None and {"shortest_edge", "longest_edge"} >= set(size):
        low, high = size.get("shortest_edge", low), size.get("longest_edge", high)
        del out["size"]
    if legacy:
        out.update({k: v for k, v in (("min_pixels", low), ("max_pixels", high)) if v is not None})
    elif low is not None or high is not None:
        edges = {k: v for k, v in (("shortest_edge", low), ("longest_edge", high)) if v is not None}
        out["size"] = {**(size or {}), **edges}
    return out


def guess_adapter(model: str) -> str:
    """Adapter name from a model name or path ('Qwen/Qwen2-VL-7B-Instruct' -> 'qwen2-vl');
    'sarchat' when nothing matches (a checkpoint fine-tuned on our corpus)."""
    low = (model or "").lower()
    # Longer aliases first, so 'qwen2.5-vl' is not taken for 'qwen2-vl'.
    pairs = sorted(((alias, a.name) for a in ADAPTERS.values() for alias in a.aliases),
                   key=lambda p: -len(p[0]))
    return next((name for alias, name in pairs if alias in low), "sarchat")
