"""The backend interface the inference runner drives.

A backend turns a batch of samples into one result per sample, in order:

    class MyBackend(Backend):
        name = "mine"
        def fingerprint(self) -> dict: ...       # identifies the model (part of the run key)
        def sampling(self) -> dict: ...          # decoding settings (part of the run key)
        def engine_settings(self) -> dict: ...   # engine/processor settings, chat template sent (run key)
        def setup(self): ...                     # heavy start-up, only called when work remains
        def prepare(self, samples): ...          # optional, overlapped with the previous batch
        def predict(self, prepared) -> list[Result]: ...
        def close(self): ...

`predict` must never raise for a per-sample problem (missing or corrupt image, endpoint error after
retries): it returns Result(prediction=None, error="...") for that sample. An exception from
`predict` is treated as a failure of every sample of the batch. Backends are constructed with the
run's InferenceConfig (inference/config.py) and the model Adapter; `--backend package.module:Class`
loads a custom one. A backend that cannot start (an unreachable endpoint, vLLM not installed)
raises a sarchat.transforms.errors.SarchatError from `setup()`, whose message is the one line the
user sees.
"""
from dataclasses import dataclass
from typing import Optional

from sarchat.inference.dataset import ImageError


@dataclass
class Sample:
    row: dict                 # the dialogue row (at least dataset.BASE_COLUMNS + backend.columns)
    image_location: str       # absolute path or URL of the image

    @property
    def id(self):
        return self.row["id"]


@dataclass
class Result:
    prediction: Optional[str] = None
    error: Optional[str] = None
    latency_s: Optional[float] = None

    @classmethod
    def failure(cls, error, latency_s=None):
        return cls(prediction=None, error=str(error) or "error", latency_s=latency_s)


class Backend:
    name = "base"
    # Extra dialogue columns the backend reads besides dataset.BASE_COLUMNS.
    columns = ()
    # Backends that answer in our canonical grammar themselves ignore the model adapter.
    fixed_adapter = None
    default_batch_size = 32
    # False for backends that never open the image (oracle, blind).
    reads_images = True
    # True when prepare() needs nothing setup() makes: the runner then prepares the first batch
    # while setup() runs (a vLLM engine loads for tens of seconds).
    prepare_before_setup = False

    def __init__(self, config, adapter):
        self.config = config
        self.adapter = adapter

    def fingerprint(self) -> dict:
        raise NotImplementedError

    def sampling(self) -> dict:
        return {}

    def engine_settings(self) -> dict:
        """Settings besides the model and sampling that change answers (part of the run key)."""
        return {}

    def prompt_settings(self) -> dict:
        """How the prompt is built beyond the adapter (part of the run key), e.g. the box-format hint."""
        return {}

    def setup(self):
        pass

    def prepare(self, samples):
        """Work that can overlap the previous batch's predict (image reading); runs in a thread."""
        return samples

    def predict(self, prepared):
        raise NotImplementedError

    def close(self):
        pass

    def versions(self) -> dict:
        return {}

    def info(self) -> dict:
        """Settings worth recording in the manifest that do not change the answers."""
        return {}


def predict_batch(backend, samples, prepared):
    """One Result per sample, in order, whatever happens: `prepared` is what backend.prepare
    returned for `samples` (or the exception it raised); a failing predict fails every sample of
    the batch, recorded per sample. Shared by `sarchat infer` and the RunInference handler."""
    if isinstance(prepared, Exception):
        return [Result.failure(f"prepare failed: {type(prepared).__name__}: {prepared}")] * len(samples)
    try:
        results = list(backend.predict(prepared))
        if len(results) != len(samples):
            raise RuntimeError(f"backend returned {len(results)} results for {len(samples)} samples")
    except Exception as exc:
        return [Result.failure(f"batch failed: {type(exc).__name__}: {exc}")] * len(samples)
    return [r if isinstance(r, Result) else Result.failure(f"bad result {r!r}") for r in results]


def per_sample(fn, prefix="prepare failed"):
    """(fn(), None), else (None, the error): an ImageError's message as it is, any other exception
    as `prefix: Type: message` (one sample's failure never stops the batch)."""
    try:
        return fn(), None
    except ImageError as exc:
        return None, str(exc)
    except Exception as exc:
        return None, f"{prefix}: {type(exc).__name__}: {exc}"
