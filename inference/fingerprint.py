"""Stable hashes that key the prediction store: model fingerprint, sampling hash, run key."""
import hashlib
import json
import os
from typing import Optional

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Every small file that can change an answer: configs, the tokenizer and the chat template (newer
# transformers save it as chat_template.jinja, beside or instead of chat_template.json).
_CONFIG_FILES = ("config.json", "generation_config.json", "adapter_config.json",
                 "preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
                 "tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt",
                 "special_tokens_map.json", "added_tokens.json", "chat_template.json", "chat_template.jinja")


def stable_hash(obj, n=16) -> str:
    """sha256 of the canonical JSON of obj (sorted keys), first n hex digits."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def model_fingerprint(model: str, revision: Optional[str] = None) -> dict:
    """Identify a checkpoint without reading gigabytes of weights.

    A local folder: sha256 of its config, tokenizer and chat-template files' bytes plus the names and sizes of its weight files
    (a retrained checkpoint changes sizes or configs; an identical copy elsewhere matches).
    A hub name: the name and revision.
    """
    if model and os.path.isdir(model):
        h = hashlib.sha256()
        for name in sorted(os.listdir(model)):
            path = os.path.join(model, name)
            if name in _CONFIG_FILES and os.path.isfile(path):
                with open(path, "rb") as fh:
                    h.update(name.encode() + b"\x1f" + hashlib.sha256(fh.read()).digest())
            elif name.endswith(_WEIGHT_SUFFIXES) and os.path.isfile(path):
                h.update(f"{name}\x1f{os.path.getsize(path)}\n".encode())
        return {"kind": "local", "name": os.path.basename(os.path.normpath(model)),
                "digest": h.hexdigest()[:16]}
    return {"kind": "hub", "name": model, "revision": revision or "default"}


def run_key(backend: str, fingerprint: dict, adapter_spec: str, sampling: dict, dataset_version: str,
            engine: dict, prompt: Optional[dict] = None) -> str:
    """The store's key: everything that can change an answer (see inference/manifest.py)."""
    return stable_hash({"backend": backend, "model": fingerprint, "adapter": adapter_spec,
                        "sampling": sampling, "dataset": dataset_version, "engine": engine,
                        "prompt": prompt or {}})
