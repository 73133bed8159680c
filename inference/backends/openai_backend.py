"""OpenAI-compatible endpoint backend (`vllm serve`, TGI, SGLang, a hosted API): standard library only.

POST {base_url}/chat/completions with the adapter's messages (the image as a base64 data URL),
temperature 0 and a seed. At most `--concurrency` requests are in flight (a thread pool).
HTTP 429, 408 and 5xx, timeouts and connection errors are retried with exponential backoff and
jitter (`--retry-base` * 2^attempt, capped at `--retry-max-wait`, honouring Retry-After), up to
`--max-retries` times; then the sample is recorded as failed and retried by the next run. Other
4xx answers fail the sample at once.

The API key comes from the environment variable named by `--api-key-env` (default OPENAI_API_KEY).
It is sent only in the Authorization header; it is never logged, never written to the manifest
(only the variable's name is), and scrubbed from any error text that might echo it.

Adapters that keep special tokens (grounding tokens of Qwen2-VL and InternVL) add vLLM's
`skip_special_tokens: false` to the request body; `--no-vllm-extras` leaves such non-OpenAI fields
out for endpoints that reject unknown parameters.
"""
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from sarchat.inference.backends.base import Backend, Result
from sarchat.inference.dataset import ImageError, image_data_url, read_image_bytes

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class _Retryable(Exception):
    def __init__(self, message, retry_after=None):
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIBackend(Backend):
    name = "openai"
    default_batch_size = 64

    def __init__(self, config, adapter, sleep=time.sleep):
        super().__init__(config, adapter)
        base = (getattr(config, "base_url", None) or os.environ.get("OPENAI_BASE_URL")
                or "http://127.0.0.1:8000/v1")
        self.base_url = base.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.api_key_env = getattr(config, "api_key_env", None) or "OPENAI_API_KEY"
        self._api_key = os.environ.get(self.api_key_env) or None
        self.concurrency = max(1, int(getattr(config, "concurrency", 16) or 16))
        self.max_retries = int(getattr(config, "max_retries", 6))
        self.retry_base = float(getattr(config, "retry_base", 1.0))
        self.retry_max_wait = float(getattr(config, "retry_max_wait", 60.0))
        self.timeout = float(getattr(config, "request_timeout", 300.0))
        self.use_hint = not getattr(config, "no_format_hint", False)
        self.vllm_extras = not getattr(config, "no_vllm_extras", False)
        self._sleep = sleep
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency)
        host = urllib.parse.urlsplit(self.url).hostname or ""
        handlers = [urllib.request.ProxyHandler({})] if host in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)
        self._rng = random.Random(int(getattr(config, "seed", 0)))
        self._rng_lock = threading.Lock()

    # ---- identity ----------------------------------------------------------------------------
    def fingerprint(self):
        # The served model's name identifies it; the endpoint address does not (a restarted server
        # on another port or host serves the same model), so it is recorded in info() only.
        return {"kind": "served", "name": self.config.model}

    def info(self):
        parts = urllib.parse.urlsplit(self.base_url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        # credentials in the URL (user:pass@) are dropped
        return {"endpoint": urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", "")),
                "api_key_env": self.api_key_env, "concurrency": self.concurrency,
                "max_retries": self.max_retries}

    def sampling(self):
        cfg = self.config
        sp = {"temperature": float(cfg.temperature), "top_p": float(cfg.top_p),
              "max_tokens": int(cfg.max_tokens), "seed": int(cfg.seed)}
        if self.adapter.stop:
            sp["stop"] = list(self.adapter.stop)
        if self.vllm_extras and "skip_special_tokens" in self.adapter.sampling_overrides:
            sp["skip_special_tokens"] = self.adapter.sampling_overrides["skip_special_tokens"]
        return sp

    # ---- work --------------------------------------------------------------------------------
    def prepare(self, samples):
        return samples

    def predict(self, samples):
        return list(self._pool.map(self._one, samples))

    def _headers(self):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _redact(self, text):
        text = str(text)
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    def _one(self, sample):
        t0 = time.perf_counter()
        try:
            data = read_image_bytes(sample.image_location)
            url = image_data_url(data, sample.image_location, self.adapter.pad_to_multiple)
        except ImageError as exc:
            return Result.failure(str(exc))
        except Exception as exc:
            return Result.failure(f"prepare failed: {type(exc).__name__}: {exc}")
        body = {"model": self.config.model,
                "messages": self.adapter.build_messages(sample.row, url, use_hint=self.use_hint)}
        body.update(self.sampling())
        payload = json.dumps(body).encode("utf-8")
        last = None
        for attempt in range(self.max_retries + 1):
            try:
                text = self._post(payload)
                return Result(self.adapter.clean_output(text), None, time.perf_counter() - t0)
            except _Retryable as exc:
                last = exc
                if attempt == self.max_retries:
                    break
                self._sleep(self._backoff(attempt, exc.retry_after))
            except Exception as exc:  # not retryable (4xx, malformed request)
                return Result.failure(self._redact(exc), time.perf_counter() - t0)
        return Result.failure(self._redact(f"{last} (gave up after {self.max_retries + 1} attempts)"),
                              time.perf_counter() - t0)

    def _backoff(self, attempt, retry_after=None):
        with self._rng_lock:
            jitter = self._rng.uniform(0, self.retry_base)
        wait = min(self.retry_max_wait, self.retry_base * (2 ** attempt) + jitter)
        if retry_after is not None:
            wait = min(self.retry_max_wait, max(wait, retry_after))
        return wait

    def _post(self, payload):
        req = urllib.request.Request(self.url, data=payload, headers=self._headers(), method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = ""
            try:
                detail = exc.read()[:300].decode("utf-8", "replace")
            except Exception:
                pass
            message = f"HTTP {exc.code}: {detail.strip()}"
            if exc.code in RETRY_STATUS or 500 <= exc.code < 600:
                raise _Retryable(message, _retry_after(exc.headers)) from None
            raise RuntimeError(message) from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
                http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"connection error: {type(exc).__name__}: {reason}") from None
        try:
            doc = json.loads(raw)
            message = doc["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Retryable(f"malformed response: {raw[:200]!r}") from None
        content = message.get("content")
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return content or ""

    def close(self):
        self._pool.shutdown(wait=False)


def _retry_after(headers):
    try:
        value = headers.get("Retry-After") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
