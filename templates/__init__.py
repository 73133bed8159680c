"""Template banks: one JSON data file per task, loaded and checked here.

The minimum bank sizes (docs/rules.md section 6) are enforced on load, and every template's placeholders are
checked against the fields the generator fills, so a typo in a data file fails loudly at start-up
rather than as a KeyError deep inside a pipeline worker. Some placeholders are required: every
refer question states the count ({n}), every classify question names the candidate categories
({candidates}), every identify question names its box ({box}).

Versioning: each bank declares a `version`, and the manifest records every bank's version and
content hash (`fingerprints`), which the dataset version covers. A template id is never reused
for another text: templates/released.json pins the content hash of every id ever shipped, and a
test holds the banks to it, so an old `template_id` in a dataset always means what it meant.
"""
import functools
import hashlib
import json
import string
from importlib import resources

from sarchat.transforms.errors import InputError
from sarchat.transforms.tasks import MIN_TEMPLATES

# Placeholders each kind of text may use.
_ALLOWED = {
    ("classify", "question"): {"candidates"},
    ("classify", "answer"): {"categories"},
    ("describe", "question"): set(),
    ("describe", "style"): {"size", "category", "position"},
    ("count", "question"): {"category", "category_plural"},
    ("refer", "question"): {"category", "category_plural", "n", "category_n", "be"},
    ("grounding", "question"): set(),
    ("grounding", "relation"): {"a", "b", "rel", "dir"},
    ("identify", "question"): {"box"},
    ("identify", "answer"): {"size", "category", "cell"},
    ("identify", "shape"): {"shape"},
}


# Placeholders a kind of text must use (the real SARChat questions all do, docs/rules.md section 6).
_REQUIRED = {
    ("refer", "question"): {"n", "category_n"},
    ("classify", "question"): {"candidates"},
    ("identify", "question"): {"box"},
}


class TemplateError(InputError):
    """A template bank (a data file) that breaks the bank rules; the message names the file and template."""


def _fields(text):
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _check(task, kind, text, where):
    if not isinstance(text, str):
        raise TemplateError(f"templates/{task}.json {where}: {kind} must be a string")
    unknown = _fields(text) - _ALLOWED[(task, kind)]
    if unknown:
        raise TemplateError(f"templates/{task}.json {where}: unknown placeholder(s) {sorted(unknown)} in {kind}")
    missing = _REQUIRED.get((task, kind), set()) - _fields(text)
    if missing:
        raise TemplateError(f"templates/{task}.json {where}: {kind} must use placeholder(s) {sorted(missing)}")


def validate_bank(task, bank):
    templates = bank.get("templates")
    if not isinstance(templates, list):
        raise TemplateError(f"templates/{task}.json: 'templates' must be a list")
    if len(templates) < MIN_TEMPLATES[task]:
        raise TemplateError(f"templates/{task}.json: {len(templates)} templates, the spec asks for at least {MIN_TEMPLATES[task]}")
    ids = [t.get("id") for t in templates]
    if len(set(ids)) != len(ids) or not all(ids):
        raise TemplateError(f"templates/{task}.json: template ids must be present and unique")
    for t in templates:
        where = f"template {t['id']}"
        _check(task, "question", t.get("question"), where)
        if task in ("classify", "identify"):
            _check(task, "answer", t.get("answer"), where)
        if task == "identify" and t.get("shape") is not None:
            _check(task, "shape", t["shape"], where)
        if task == "describe":
            style = bank.get("styles", {}).get(t.get("style"))
            if style is None:
                raise TemplateError(f"templates/describe.json {where}: unknown style {t.get('style')!r}")
    if task == "describe":
        for name, style in bank["styles"].items():
            for part in ("lead", "first", "sep", "end"):
                _check(task, "style", style.get(part), f"style {name}")
            more = style.get("more")
            for form in (more if isinstance(more, list) and more else [more]):
                _check(task, "style", form, f"style {name} more")
    if task == "grounding":
        forms = bank.get("relation_forms") or []
        if not forms:
            raise TemplateError("templates/grounding.json: 'relation_forms' must not be empty")
        for form in forms:
            _check(task, "relation", form.get("form"), f"relation form {form.get('id')}")
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


def template_content(task, bank, template) -> dict:
    """What a template id stands for: its texts, with a describe template's style spelled out."""
    content = {k: v for k, v in template.items() if k != "id"}
    if task == "describe":
        content["style"] = bank["styles"][template["style"]]
    return content


def template_hashes(task, bank) -> dict:
    """{template id: sha256 of what it stands for} (checked against templates/released.json)."""
    return {t["id"]: hashlib.sha256(json.dumps(template_content(task, bank, t), sort_keys=True,
                                               ensure_ascii=False).encode("utf-8")).hexdigest()
            for t in bank["templates"]}


def released_ids() -> dict:
    """templates/released.json: {task: {template id: content hash}} of every id ever shipped."""
    return json.loads(resources.files(__name__).joinpath("released.json").read_text(encoding="utf-8"))["ids"]


def fingerprints(banks=None) -> dict:
    """{task: {"version": the bank's declared version, "sha256": its content hash}} for the manifest
    and the dataset version: any edit of a bank changes the dataset version."""
    banks = load_all() if banks is None else banks
    return {task: {"version": bank.get("version", 1), "sha256": bank_fingerprint(bank)}
            for task, bank in sorted(banks.items())}
