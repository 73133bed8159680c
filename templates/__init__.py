"""Template banks: one JSON data file per task, loaded and checked here.

The SPEC's minimum bank sizes are enforced on load, and every template's placeholders are
checked against the fields the generator fills, so a typo in a data file fails loudly at start-up
rather than as a KeyError deep inside a pipeline worker.
"""
import functools
import hashlib
import json
import string
from importlib import resources

from sarchat.transforms.tasks import MIN_TEMPLATES

# Placeholders each kind of text may use.
_ALLOWED = {
    ("classify", "question"): set(),
    ("classify", "answer"): {"categories"},
    ("describe", "question"): set(),
    ("describe", "style"): {"size", "category", "position"},
    ("count", "question"): {"category", "category_plural"},
    ("refer", "question"): {"category", "category_plural"},
    ("grounding", "question"): set(),
    ("grounding", "relation"): {"a", "b", "rel", "dir"},
    ("identify", "question"): {"box"},
    ("identify", "answer"): {"size", "category", "cell"},
    ("identify", "shape"): {"shape"},
}


class TemplateError(ValueError):
    pass


def _fields(text):
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _check(task, kind, text, where):
    if not isinstance(text, str):
        raise TemplateError(f"templates/{task}.json {where}: {kind} must be a string")
    unknown = _fields(text) - _ALLOWED[(task, kind)]
    if unknown:
        raise TemplateError(f"templates/{task}.json {where}: unknown placeholder(s) {sorted(unknown)} in {kind}")


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
            for part in ("lead", "first", "more", "sep", "end"):
                _check(task, "style", style.get(part), f"style {name}")
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
    """sha256 of a bank's content (canonical JSON: key order and whitespace do not count)."""
    return hashlib.sha256(json.dumps(bank, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def fingerprints(banks=None) -> dict:
    """{task: {"version": the bank's declared version, "sha256": its content hash}} for the manifest
    and the dataset version: any edit of a bank changes the dataset version."""
    banks = load_all() if banks is None else banks
    return {task: {"version": bank.get("version", 1), "sha256": bank_fingerprint(bank)}
            for task, bank in sorted(banks.items())}
