"""Template banks: one JSON data file per task, loaded and checked here.

The minimum bank sizes (docs/rules.md section 6) are enforced on load, and every template's placeholders are
checked against the fields the generator fills, so a typo in a data file fails loudly at start-up
rather than as a KeyError deep inside a pipeline worker. Some placeholders are required: every
refer question states the count ({n}), every classify question names the candidate categories
({candidates}), every identify question names its box ({box}).

Versioning: each bank declares a `version`, and the manifest records every bank's version and
content hash (`fingerprints`), which the dataset version covers. A template id is never reused
for another text: templates/released.json pins the content hash of every id ever shipped, and
tests/test_dialogues.py holds the banks to it, so an old `template_id` in a dataset always means
what it meant.
"""
import functools
import hashlib
import json
import string
from importlib import resources
from typing import Union

import msgspec

from sarchat.transforms.errors import InputError
from sarchat.transforms.tasks import BY_ID, MIN_TEMPLATES


class TemplateError(InputError):
    """A template bank (a data file) that breaks the bank rules; the message names the file and template."""


# The shape of a bank file. Decoding into these types checks every field's presence and type, and
# refuses unknown fields (a misspelt key would otherwise be ignored); the texts' placeholders are
# checked after, against the task module's TEMPLATE_FIELDS.
class _Template(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    question: str
    answer: Union[str, None] = None
    shape: Union[str, None] = None
    style: Union[str, None] = None


class _Style(msgspec.Struct, forbid_unknown_fields=True):
    lead: str
    first: str
    more: Union[str, list[str]]
    sep: str
    end: str


class _RelationForm(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    form: str


class _Bank(msgspec.Struct, forbid_unknown_fields=True):
    templates: list[_Template]
    task: str = ""
    version: int = 1
    description: str = ""
    styles: dict[str, _Style] = {}
    relation_forms: list[_RelationForm] = []
    answer_lead: str = ""


def _texts(kinds, bank: _Bank):
    """(kind, text, where) of every text in a bank that placeholders are checked in; `kinds`: the
    task module's TEMPLATE_FIELDS."""
    for t in bank.templates:
        where = f"template {t.id}"
        yield "question", t.question, where
        if "answer" in kinds:  # a task whose answers come from its templates needs one in each
            yield "answer", t.answer, where
        if "shape" in kinds and t.shape is not None:
            yield "shape", t.shape, where
    for name, style in bank.styles.items():
        for text in (style.lead, style.first, style.sep, style.end):
            yield "style", text, f"style {name}"
        forms = [style.more] if isinstance(style.more, str) else style.more
        if not forms:
            yield "style", None, f"style {name} more"
        for text in forms:
            yield "style", text, f"style {name} more"
    for form in bank.relation_forms:
        yield "relation", form.form, f"relation form {form.id}"


def _fields(text):
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def validate_bank(task, bank):
    """`bank` (the parsed JSON of templates/<task>.json), checked: its shape by decoding, then the
    bank rules: the minimum size, unique ids, known styles and each text's placeholders."""
    file = f"templates/{task}.json"
    try:
        typed = msgspec.convert(bank, _Bank)
    except msgspec.ValidationError as exc:
        raise TemplateError(f"{file}: {exc}") from None
    if typed.task and typed.task != task:
        raise TemplateError(f"{file}: declares task {typed.task!r}")
    if len(typed.templates) < MIN_TEMPLATES[task]:
        raise TemplateError(f"{file}: {len(typed.templates)} templates, the spec asks for at least {MIN_TEMPLATES[task]}")
    ids = [t.id for t in typed.templates]
    if len(set(ids)) != len(ids) or not all(ids):
        raise TemplateError(f"{file}: template ids must be present and unique")
    kinds = BY_ID[task].TEMPLATE_FIELDS  # the task's placeholders; docs/rules.md, section 6
    if "style" in kinds:
        for t in typed.templates:
            if t.style not in typed.styles:
                raise TemplateError(f"{file} template {t.id}: unknown style {t.style!r}")
    if "relation" in kinds and not typed.relation_forms:
        raise TemplateError(f"{file}: 'relation_forms' must not be empty")
    for kind, text, where in _texts(kinds, typed):
        if text is None:
            raise TemplateError(f"{file} {where}: {kind} must be a string")
        allowed, required = kinds[kind]
        used = _fields(text)
        if used - allowed:
            raise TemplateError(f"{file} {where}: unknown placeholder(s) {sorted(used - allowed)} in {kind}")
        if required - used:
            raise TemplateError(f"{file} {where}: {kind} must use placeholder(s) {sorted(required - used)}")
    return bank


@functools.lru_cache(maxsize=None)
def load_bank(task: str) -> dict:
    """The checked template bank of one task, as the JSON data file defines it."""
    if task not in MIN_TEMPLATES:
        raise TemplateError(f"no template bank for task {task!r}")
    text = resources.files(__name__).joinpath(f"{task}.json").read_text(encoding="utf-8")
    return validate_bank(task, json.loads(text))


def load_all() -> dict:
    return {task: load_bank(task) for task in MIN_TEMPLATES}


def bank_fingerprint(bank) -> str:
    """sha256 of a bank's content (canonical JSON: key order, whitespace and the prose
    `description` do not count)."""
    content = {k: v for k, v in bank.items() if k != "description"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def fingerprints(banks=None) -> dict:
    """{task: {"version": the bank's declared version, "sha256": its content hash}} for the manifest
    and the dataset version: any edit of a bank changes the dataset version."""
    banks = load_all() if banks is None else banks
    return {task: {"version": bank.get("version", 1), "sha256": bank_fingerprint(bank)}
            for task, bank in sorted(banks.items())}
