"""Inference backends; inference/config.py's `get_backend_class(name)` resolves a name or
`package.module:Class`.

The registry lives in inference/config.py (the flags validate --backend against it). Backend
modules are imported lazily: vLLM is imported only by the vllm backend's setup().
"""
