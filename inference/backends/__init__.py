"""Inference backends; `get_backend_class(name)` resolves a name or `package.module:attr`.

Backend modules are imported lazily: vLLM is imported only by the vllm backend's setup().
"""
import importlib

BACKENDS = {
    "vllm": ("sarchat.inference.backends.vllm_backend", "VllmBackend"),
    "openai": ("sarchat.inference.backends.openai_backend", "OpenAIBackend"),
    "cfar": ("sarchat.inference.backends.cfar_backend", "CfarBackend"),
    "oracle": ("sarchat.inference.backends.baselines_backend", "OracleBackend"),
    "blind": ("sarchat.inference.backends.baselines_backend", "BlindBackend"),
}


def get_backend_class(name: str):
    if name in BACKENDS:
        module, attr = BACKENDS[name]
    elif ":" in name:
        module, attr = name.split(":", 1)
    else:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)} "
                         "(or package.module:Class for a custom one)")
    return getattr(importlib.import_module(module), attr)
