"""In-process vLLM backend: `vllm.LLM(...).chat(list_of_conversations, sampling_params=...)`.

vLLM is imported in `setup()` only, never at module import. The engine is injectable
(`VllmBackend(config, adapter, engine=..., sampling_params_cls=...)`) so tests drive the backend
with a fake honouring `LLM.chat`'s signature.

Each conversation is the adapter's messages: an `image_url` part holding a base64 data URL of the
image (read and decoded by us first, so a missing or corrupt image fails that sample only) and the
question text. Whole batches go to one `llm.chat` call (vLLM schedules them continuously); when a
call raises, the batch is bisected until the failing conversations are isolated and recorded as
errors. Sampling is deterministic: temperature 0 and a fixed seed, recorded in the run manifest.
Data parallelism: one process per GPU with `--num-shards K --shard-index I` (see run.py).
"""
import copy
import time
from concurrent.futures import ThreadPoolExecutor

from sarchat.inference.backends.base import Backend, Result
from sarchat.inference.dataset import ImageError, image_data_url, read_image_bytes
from sarchat.inference.fingerprint import model_fingerprint


def parse_engine_args(items):
    """['max_num_seqs=128', 'enforce_eager=true', 'hf_overrides={"a": 1}'] -> dict (JSON values)."""
    import json

    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--engine-arg wants KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


class VllmBackend(Backend):
    name = "vllm"
    default_batch_size = 256

    def __init__(self, config, adapter, engine=None, sampling_params_cls=None):
        super().__init__(config, adapter)
        self.engine = engine
        self._sp_cls = sampling_params_cls
        self._sp = None
        self._pool = ThreadPoolExecutor(max_workers=max(1, int(getattr(config, "io_workers", 8) or 8)))
        self.use_hint = not getattr(config, "no_format_hint", False)
        self.chat_template = self._chat_template()
        self.calls = 0

    def _chat_template(self):
        path = getattr(self.config, "chat_template", None)
        if path:
            with open(path, encoding="utf-8") as fh:
                return fh.read()
        return self.adapter.chat_template

    # ---- identity ----------------------------------------------------------------------------
    def fingerprint(self):
        return model_fingerprint(self.config.model, getattr(self.config, "revision", None))

    def sampling(self):
        cfg = self.config
        sp = {"temperature": float(cfg.temperature), "top_p": float(cfg.top_p),
              "max_tokens": int(cfg.max_tokens), "seed": int(cfg.seed)}
        sp.update(self.adapter.sampling_overrides)
        if self.adapter.stop:
            sp["stop"] = list(self.adapter.stop)
        if self.chat_template and getattr(cfg, "chat_template", None):
            from sarchat.inference.fingerprint import stable_hash

            sp["chat_template_sha"] = stable_hash(self.chat_template)
        return sp

    def engine_kwargs(self):
        cfg = self.config
        kw = {"model": cfg.model, "seed": int(cfg.seed), "limit_mm_per_prompt": {"image": 1}}
        kw.update(copy.deepcopy(self.adapter.engine_kwargs))
        if getattr(cfg, "revision", None):
            kw["revision"] = cfg.revision
        kw["tensor_parallel_size"] = int(getattr(cfg, "tensor_parallel_size", 1) or 1)
        if getattr(cfg, "gpu_memory_utilization", None):
            kw["gpu_memory_utilization"] = float(cfg.gpu_memory_utilization)
        if getattr(cfg, "max_model_len", None):
            kw["max_model_len"] = int(cfg.max_model_len)
        if getattr(cfg, "trust_remote_code", False):
            kw["trust_remote_code"] = True
        kw.update(parse_engine_args(getattr(cfg, "engine_arg", None)))
        return kw

    def versions(self):
        from sarchat.inference.run import package_version

        return {"vllm": package_version("vllm"), "torch": package_version("torch"),
                "transformers": package_version("transformers")}

    # ---- work --------------------------------------------------------------------------------
    def setup(self):
        if self.engine is None:
            from vllm import LLM  # the only place vLLM is imported

            self.engine = LLM(**self.engine_kwargs())
        if self._sp_cls is None:
            from vllm import SamplingParams

            self._sp_cls = SamplingParams
        fields = {k: v for k, v in self.sampling().items() if k != "chat_template_sha"}
        self._sp = self._sp_cls(**fields)

    def _conversation(self, sample):
        data = read_image_bytes(sample.image_location)
        url = image_data_url(data, sample.image_location, self.adapter.pad_to_multiple)
        return self.adapter.build_messages(sample.row, url, use_hint=self.use_hint)

    def _prepare_one(self, sample):
        try:
            return self._conversation(sample), None
        except ImageError as exc:
            return None, str(exc)
        except Exception as exc:  # never let one sample stop the run
            return None, f"prepare failed: {type(exc).__name__}: {exc}"

    def prepare(self, samples):
        return list(self._pool.map(self._prepare_one, samples))

    def predict(self, prepared):
        results = [None] * len(prepared)
        todo = []
        for i, (conv, err) in enumerate(prepared):
            if err is not None:
                results[i] = Result.failure(err)
            else:
                todo.append((i, conv))
        if todo:
            t0 = time.perf_counter()
            texts = self._generate([conv for _, conv in todo])
            per_sample = (time.perf_counter() - t0) / len(todo)
            for (i, _), out in zip(todo, texts):
                if isinstance(out, Exception):
                    results[i] = Result.failure(f"vllm: {type(out).__name__}: {out}", per_sample)
                else:
                    results[i] = Result(self.adapter.clean_output(out), None, per_sample)
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
