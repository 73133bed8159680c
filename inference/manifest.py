"""What identifies a run (the run key) and what its manifest.json records: one builder for both
entry points (`sarchat infer` and the RunInference pipeline).

The run key covers everything that can change an answer (docs/rules.md section 10): the dataset version,
the backend, the model fingerprint (checkpoint or hub name and revision), the adapter's prompt spec
(its prompt version included, and a user adapter file's sha256), the sampling parameters and the backend's engine settings
(`Backend.engine_settings()`: vLLM's engine arguments and processor settings, the chat template
actually sent). Placement settings that only decide where and how fast the work runs (GPU memory
share, tensor parallelism, batch size, concurrency, shards) are recorded but are not part of it,
so a rerun on other hardware resumes.
"""
import re
from dataclasses import dataclass

from sarchat.inference.fingerprint import run_key, stable_hash
from sarchat.inference.versions import base_versions
from sarchat.transforms.adapters import Adapter, get_adapter, guess_adapter


@dataclass(frozen=True)
class RunIdentity:
    backend: str
    adapter: Adapter
    fingerprint: dict
    sampling: dict
    engine: dict
    dataset_version: str
    key: str


def run_identity(backend, dataset_version) -> RunIdentity:
    """The identity of a run of `backend` (constructed, not set up) on a dataset version."""
    fingerprint, sampling, engine = backend.fingerprint(), backend.sampling(), backend.engine_settings()
    key = run_key(backend.name, fingerprint, backend.adapter.spec, sampling, dataset_version, engine,
                  backend.prompt_settings())
    return RunIdentity(backend.name, backend.adapter, fingerprint, sampling, engine, dataset_version, key)


def resolve_adapter(cfg, backend_cls) -> Adapter:
    """The adapter of a run: the backend's fixed one (baselines answer in canonical boxes), else
    --adapter, else the one guessed from --model."""
    fixed = getattr(backend_cls, "fixed_adapter", None)
    if fixed:
        return get_adapter(fixed)
    return get_adapter(cfg.adapter or guess_adapter(cfg.model or ""))


def model_column(cfg, backend) -> str:
    """The name written in the predictions' model column."""
    return cfg.model_name or cfg.model or backend.name


# Credentials that may ride in a command line: user:password@ in a URL, and query parameters.
_URL_USERINFO = re.compile(r"(://)[^/@\s]{1,200}@")
_SECRET_QUERY = re.compile(r"([?&;](?:api[-_]?key|key|token|access[-_]?token|auth|secret|password|passwd|pwd|"
                           r"sig|signature|x-amz-signature|x-goog-signature|code)=)[^&;#\s]*", re.IGNORECASE)


def redact(text) -> str:
    """`text` with URL credentials (user:password@, ?api-key=..., ?token=...) replaced by ***."""
    return _SECRET_QUERY.sub(r"\1***", _URL_USERINFO.sub(r"\1***@", str(text)))


def redact_argv(argv):
    """The command line for the manifest, credentials removed."""
    return [redact(a) for a in argv]


def run_manifest(cfg, identity: RunIdentity, backend, tool, extra_versions=None) -> dict:
    """The run manifest's common part (the entry points add timing, shards and predictions)."""
    adapter = identity.adapter
    versions = {**base_versions(), **(backend.versions() or {}), **(extra_versions or {})}
    return {
        "tool": tool,
        "model": model_column(cfg, backend),
        "model_path": cfg.model,
        "model_fingerprint": identity.fingerprint,
        "adapter": adapter.name,
        "adapter_file": adapter.source,    # a user adapter file (--adapter PATH.json), else None
        "adapter_digest": adapter.digest,  # its sha256 (also in prompt_spec, so in the run key)
        "box_format": adapter.box_format.spec,
        "prompt_spec": adapter.spec,
        "backend": identity.backend,
        "backend_info": backend.info(),
        "sampling": identity.sampling,
        "sampling_hash": stable_hash(identity.sampling),
        "engine": identity.engine,
        "chat_template_file": cfg.chat_template,
        "run_key": identity.key,
        "dataset": cfg.dataset,
        "dataset_version": identity.dataset_version,
        "split": cfg.split,
        "tasks": list(cfg.tasks) if cfg.tasks else None,
        "limit": cfg.limit,
        "versions": versions,
    }
