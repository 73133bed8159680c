"""OpenAI-compatible endpoint backend (the vLLM OpenAI server, TGI, SGLang, a hosted API):
standard library only.

POST {base_url}/chat/completions with the adapter's messages (the image as a base64 data URL),
temperature 0 and a seed. At most `--concurrency` requests are in flight (a thread pool), each
thread keeping one HTTP/1.1 connection open for the run (a connection the server closed while idle
is replaced at once, without counting as a retry).

Per sample the client does little: `prepare` (overlapped with the previous batch) takes each
image's data URL, already JSON-encoded, from an ImageCache (inference/dataset.py): the runner
sends samples grouped by image, so an image is read, checked and base64-encoded once, not once per
question. A JPEG sent as it is is checked by a 1/8-scale decode (all of its data read, most of the
inverse DCT skipped), anything else decoded whole; the size is checked against the row and
--max-image-pixels from the header first. The check stays on the client because vLLM's server
answers an image it fails to decode (on a blank image) instead of refusing it. Each request body is
the sample's small JSON with the cached image spliced in, byte for byte what json.dumps of the
whole body gives.
HTTP 429, 408 and 5xx, timeouts and connection errors are retried with exponential backoff and
jitter (`--retry-base` * 2^attempt, capped at `--retry-max-wait`, honouring Retry-After), up to
`--max-retries` times; then the sample is recorded as failed and retried by the next run. Other
4xx answers fail the sample at once.

What decides the answer is sent the way the vLLM server accepts it: the chat template the vllm
backend would use (--chat-template's, else the adapter's) as `chat_template` in the request body
(vLLM >= 0.10 accepts it only when started with --trust-request-chat-template; a test request at
start-up finds out, and the run refuses to start when the server rejects it), the adapter's
processor settings as `mm_processor_kwargs`, and `skip_special_tokens: false` for adapters whose
boxes are special tokens. `--no-vllm-extras` sends none of these non-OpenAI fields (for endpoints
that reject them); an adapter or --chat-template that needs a template then refuses to start.

Start-up (only when work remains) checks the endpoint with GET {base_url}/models: unreachable, a
refused key or a --model the server does not serve stop the run with one line.

Requests never follow redirects (a 3xx fails the sample: the key goes to --base-url's origin and
nowhere else), and `--request-timeout` is a total deadline per request (connect, send, wait, read),
enforced by closing the socket when it passes. Replies are capped at MAX_RESPONSE_BYTES.

The API key comes from the environment variable named by `--api-key-env` (default OPENAI_API_KEY).
It is sent only in the Authorization header; it is never logged, never written to the manifest
(only the variable's name is), and scrubbed from any error text that might echo it.
"""
import base64
import collections
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from sarchat.inference.backends.base import Backend, Result, Sample, per_sample
from sarchat.inference.config import parse_engine_args
from sarchat.inference.dataset import ImageCache, read_image_bytes, row_size
from sarchat.inference.fingerprint import stable_hash
from sarchat.transforms import decode
from sarchat.transforms.adapters import processor_kwargs
from sarchat.transforms.errors import InputError, UsageError

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RESPONSE_BYTES = 16 << 20
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Where the image goes in a body's JSON before the cached, JSON-encoded data URL is spliced in
# (json.dumps writes the NULs as \u0000; a question holding this exact text falls back to dumps).
_IMAGE_SLOT = "\x00sarchat-image\x00"
_IMAGE_SLOT_JSON = json.dumps(_IMAGE_SLOT)
# A reused connection that fails like this before any reply byte was closed by the server while idle.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class _Retryable(Exception):
    def __init__(self, message, retry_after=None):
        super().__init__(message)
        self.retry_after = retry_after


class _HTTPStatus(Exception):
    """A reply whose status is not 2xx (not retried unless RETRY_STATUS says so)."""

    def __init__(self, status, detail, headers):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail, self.headers = status, detail, headers


# A sample with its JSON-encoded image data URL, or the error that stops it being sent.
_Prepared = collections.namedtuple("_Prepared", "sample image_json error", defaults=(None, None))


class OpenAIBackend(Backend):
    name = "openai"
    default_batch_size = 64

    def __init__(self, config, adapter, sleep=time.sleep):
        super().__init__(config, adapter)
        base = (config.base_url or os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1").rstrip("/")
        parts = urllib.parse.urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--base-url {_public_url(base)}: expected http(s)://HOST[:PORT]/PATH")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._host_header = _host_header(self.host, self.port, self.scheme)
        self._path, self._query = parts.path.rstrip("/"), (f"?{parts.query}" if parts.query else "")
        self.base_url = _public_url(base)
        self._api_key = os.environ.get(config.api_key_env) or None
        self.max_retries = config.max_retries
        self.timeout = config.request_timeout
        self.use_hint = not config.no_format_hint
        self.vllm_extras = not config.no_vllm_extras
        self.chat_template = config.chat_template_text or adapter.chat_template
        extra = parse_engine_args(config.engine_arg)
        others = sorted(k for k in extra if k != "mm_processor_kwargs")
        if others:
            raise UsageError(f"--engine-arg {', '.join(others)}: vLLM engine arguments apply to --backend vllm; "
                             "for --backend openai the server's own flags decide (only mm_processor_kwargs is sent)")
        mm = extra.get("mm_processor_kwargs", adapter.engine_kwargs.get("mm_processor_kwargs"))
        self.mm_processor_kwargs = processor_kwargs(mm) if isinstance(mm, dict) and mm else None
        if not self.vllm_extras and self.chat_template:
            source = "--chat-template" if config.chat_template_text else f"the {adapter.name} adapter"
            raise UsageError(f"{source} needs its chat template sent with each request (vLLM's chat_template "
                             "field), which --no-vllm-extras forbids; drop --no-vllm-extras")
        self._fields = {**self.sampling(), **self._extras()}  # every request body's fields beside the messages
        self._sleep = sleep
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency)
        self._images = ImageCache(adapter.pad_to_multiple, config.max_image_pixels, read_image_bytes,
                                  encode=lambda url: json.dumps(url).encode("ascii"), full_decode=False)
        self._local = threading.local()  # this thread's open connection
        self._connections = set()
        self._connections_lock = threading.Lock()
        self._watchdog = _Watchdog()
        self._proxy = None if self.host in _LOOPBACK else _proxy_for(self.scheme, self.host)
        self._rng = random.Random(int(config.seed))
        self._rng_lock = threading.Lock()
        self.models_check = None

    # ---- identity ----------------------------------------------------------------------------
    def fingerprint(self):
        # The served model's name identifies it; the endpoint address does not (a restarted server
        # on another port or host serves the same model), so it is recorded in info() only.
        return {"kind": "served", "name": self.config.model}

    def info(self):
        return {"endpoint": self.base_url, "api_key_env": self.config.api_key_env,
                "concurrency": self.config.concurrency, "max_retries": self.max_retries,
                "request_timeout": self.timeout, "models_check": self.models_check}

    def sampling(self):
        cfg = self.config
        sp = {"temperature": float(cfg.temperature), "top_p": float(cfg.top_p),
              "max_tokens": int(cfg.max_tokens), "seed": int(cfg.seed)}
        if self.adapter.stop:
            sp["stop"] = list(self.adapter.stop)
        if self.vllm_extras and "skip_special_tokens" in self.adapter.sampling_overrides:
            sp["skip_special_tokens"] = self.adapter.sampling_overrides["skip_special_tokens"]
        return sp

    def _extras(self):
        """The request fields beyond OpenAI's that decide the answer on a vLLM server."""
        fields = {"chat_template": self.chat_template, "mm_processor_kwargs": self.mm_processor_kwargs}
        return {name: value for name, value in fields.items() if value and self.vllm_extras}

    def prompt_settings(self) -> dict:
        return {"format_hint": self.use_hint}  # --no-format-hint changes what the model is asked

    def engine_settings(self):
        extras = self._extras()
        return {"chat_template_sha": stable_hash(self.chat_template) if "chat_template" in extras else None,
                "mm_processor_kwargs": extras.get("mm_processor_kwargs"), "vllm_extras": self.vllm_extras}

    # ---- start-up ----------------------------------------------------------------------------
    def setup(self):
        self._check_models()
        if "chat_template" in self._fields:
            self._check_template_accepted()

    def _with_retries(self, fn):
        for attempt in range(self.max_retries + 1):
            try:
                return fn()
            except _Retryable as exc:
                if attempt == self.max_retries:
                    raise
                self._sleep(self._backoff(attempt, exc.retry_after))

    def _check_models(self):
        where = f"{self.base_url}/models"
        try:
            data = self._with_retries(lambda: self._exchange("GET", "/models"))
        except _Retryable as exc:
            raise InputError(f"cannot reach the endpoint {where} (--base-url): {self._redact(exc)}") from None
        except _HTTPStatus as exc:
            if exc.status in (401, 403):
                env = self.config.api_key_env
                have = f"the key in ${env}" if self._api_key else f"no key (${env} is unset)"
                raise InputError(f"the endpoint {where} refused the request with {have}: HTTP {exc.status}") from None
            if exc.status in (404, 405, 501):
                self.models_check = f"not offered (HTTP {exc.status})"
                return
            raise InputError(f"the endpoint {where} answered {self._redact(exc)}") from None
        try:
            served = [m["id"] for m in json.loads(data)["data"]]
        except (ValueError, KeyError, TypeError):
            self.models_check = "unreadable model list"
            return
        if self.config.model not in served:
            raise UsageError(f"--model {self.config.model}: {where} does not serve it (it serves "
                             f"{', '.join(map(str, served[:10])) or 'nothing'}{' ...' if len(served) > 10 else ''})")
        self.models_check = "served"

    def _check_template_accepted(self):
        body = {"model": self.config.model, "messages": [{"role": "user", "content": "Reply OK."}],
                "max_tokens": 1, "temperature": 0.0, **self._extras()}
        try:
            self._with_retries(lambda: self._chat(json.dumps(body).encode("utf-8")))
        except _HTTPStatus as exc:
            raise UsageError(f"{self.base_url} refuses the chat template sent with requests ({self._redact(exc)}); "
                             "a vLLM server needs --trust-request-chat-template for it") from None
        except _Retryable as exc:
            raise InputError(f"{self.base_url}: the start-up request failed: {self._redact(exc)}") from None

    # ---- work --------------------------------------------------------------------------------
    def prepare(self, samples):
        return [self._prepare_one(s) for s in samples]

    def _prepare_one(self, sample):
        return _Prepared(sample, *per_sample(lambda: self._images.get(sample.image_location, row_size(sample.row))))

    def predict(self, prepared):
        items = [p if isinstance(p, _Prepared) else self._prepare_one(p) if isinstance(p, Sample) else p
                 for p in prepared]
        return list(self._pool.map(self._one, items))

    def _payload(self, item):
        """The request body: json.dumps of {model, messages, sampling, extras} as bytes, the image's
        cached JSON spliced into its slot."""
        def body(image):
            messages = self.adapter.build_messages(item.sample.row, image, use_hint=self.use_hint)
            return json.dumps({"model": self.config.model, "messages": messages, **self._fields})

        head, slot, tail = body(_IMAGE_SLOT).partition(_IMAGE_SLOT_JSON)
        if not slot or _IMAGE_SLOT_JSON in tail:  # the question itself holds the slot's text
            return body(json.loads(item.image_json)).encode("utf-8")
        return b"".join((head.encode("utf-8"), item.image_json, tail.encode("utf-8")))

    def _headers(self, payload=None):
        headers = {"Accept": "application/json", "Host": self._host_header}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _redact(self, text):
        return str(text).replace(self._api_key, "***") if self._api_key else str(text)

    def _one(self, item):
        if item.error is not None:
            return Result.failure(item.error)
        t0 = time.perf_counter()
        payload, error = per_sample(lambda: self._payload(item))
        if error is not None:
            return Result.failure(error)
        try:
            text = self._with_retries(lambda: self._chat(payload))
            return Result(self.adapter.clean_output(text), None, time.perf_counter() - t0)
        except _Retryable as exc:
            return Result.failure(self._redact(f"{exc} (gave up after {self.max_retries + 1} attempts)"),
                                  time.perf_counter() - t0)
        except Exception as exc:  # not retryable (4xx, a redirect, a malformed request)
            return Result.failure(self._redact(exc), time.perf_counter() - t0)

    def _backoff(self, attempt, retry_after=None):
        base, most = self.config.retry_base, self.config.retry_max_wait
        with self._rng_lock:
            jitter = self._rng.uniform(0, base)
        wait = min(most, base * (2 ** attempt) + jitter)
        return wait if retry_after is None else min(most, max(wait, retry_after))

    def _chat(self, payload):
        """The reply text of one chat completion; _Retryable or _HTTPStatus when there is none."""
        try:
            raw = self._exchange("POST", "/chat/completions", payload)
        except _HTTPStatus as exc:
            if exc.status in RETRY_STATUS or 500 <= exc.status < 600:
                raise _Retryable(str(exc), _retry_after(exc.headers)) from None
            raise
        try:
            content = json.loads(raw)["choices"][0]["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError):
            raise _Retryable(f"malformed response: {raw[:200]!r}") from None
        if isinstance(content, list):  # content parts
            content = "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
        if content is not None and not isinstance(content, str):
            raise _Retryable(f"malformed response: the message content is a {type(content).__name__}, not text")
        return decode.escape_surrogates(content or "")  # stored as text whatever the endpoint sent

    # ---- HTTP --------------------------------------------------------------------------------
    def _connection(self):
        if self._proxy is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            return cls(self.host, self.port, timeout=self.timeout)
        proxy, auth = self._proxy
        pp = urllib.parse.urlsplit(proxy)
        if self.scheme == "https":  # CONNECT tunnel through the proxy
            conn = http.client.HTTPSConnection(pp.hostname, pp.port or 8080, timeout=self.timeout)
            conn.set_tunnel(self.host, self.port, headers={"Proxy-Authorization": auth} if auth else None)
            return conn
        return http.client.HTTPConnection(pp.hostname, pp.port or 8080, timeout=self.timeout)

    def _checkout(self):
        """(this thread's open connection or a new one, whether it was used before)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        conn = self._local.conn = self._connection()
        with self._connections_lock:
            self._connections.add(conn)
        return conn, False

    def _discard(self, conn):
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._connections_lock:
            self._connections.discard(conn)

    def _exchange(self, method, suffix, payload=None):
        """The body of a 2xx reply to one request, within the total deadline; never follows a redirect."""
        target = self._path + suffix + self._query
        headers = self._headers(payload)
        if self._proxy is not None and self.scheme == "http":
            target = f"http://{self._host_header}{target}"
            if self._proxy[1]:
                headers["Proxy-Authorization"] = self._proxy[1]
        deadline = self._watchdog.start(self.timeout)
        try:
            while True:
                conn, reused = self._checkout()
                deadline.conn, deadline.sock, replied = conn, conn.sock, False
                try:
                    if conn.sock is None:
                        conn.connect()
                        deadline.sock = conn.sock
                    conn.request(method, target, body=payload, headers=headers)
                    resp = conn.getresponse()
                    replied = True
                    data = resp.read(MAX_RESPONSE_BYTES + 1)
                    if len(data) > MAX_RESPONSE_BYTES:
                        self._discard(conn)
                        raise RuntimeError(f"reply larger than {MAX_RESPONSE_BYTES} bytes")
                    if deadline.passed():  # the shut-down socket ends a read early rather than failing it
                        raise TimeoutError("deadline")
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    self._discard(conn)
                    if deadline.passed():
                        raise _Retryable(f"no complete reply within --request-timeout {self.timeout:g} s") from None
                    if reused and not replied and isinstance(exc, _STALE):
                        continue  # closed by the server while idle: the same request on a new connection
                    raise _Retryable(f"connection error: {type(exc).__name__}: {exc}") from None
                except BaseException:
                    self._discard(conn)
                    raise
                if resp.will_close or not resp.isclosed():  # not reusable: closing, or body left unread
                    self._discard(conn)
                break
        finally:
            self._watchdog.disarm(deadline)
        if 300 <= resp.status < 400:
            to = _public_url(resp.headers.get("Location") or "?")
            raise _HTTPStatus(resp.status, f"redirect to {to} not followed (requests go to --base-url only)",
                              resp.headers)
        if not 200 <= resp.status < 300:
            raise _HTTPStatus(resp.status, data[:300].decode("utf-8", "replace").strip(), resp.headers)
        return data

    def close(self):
        self._pool.shutdown(wait=False)
        with self._connections_lock:
            conns, self._connections = list(self._connections), set()
        for conn in conns:
            conn.close()
        self._watchdog.stop()


class _Deadline:
    """One request's deadline, armed with _Watchdog.start: when it passes, the socket of `conn`
    is shut down, so that no read, write or handshake can outlast it (socket timeouts alone bound
    each operation only)."""

    __slots__ = ("end", "fire_at", "conn", "sock")

    def __init__(self, end):
        self.end = self.fire_at = end
        self.conn = self.sock = None

    def passed(self):
        return time.monotonic() >= self.end


class _Watchdog:
    """One thread for every request's deadline (a timer thread per request costs more than a
    request to a fast local server). At most --concurrency deadlines are armed at a time."""

    def __init__(self):
        self._armed = set()
        self._cond = threading.Condition()
        self._thread = None
        self._stopped = False

    def start(self, seconds):
        deadline = _Deadline(time.monotonic() + seconds)
        with self._cond:
            self._armed.add(deadline)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sarchat-openai-deadlines", daemon=True)
                self._thread.start()
            elif len(self._armed) == 1:
                self._cond.notify()  # it sleeps while nothing is armed; later deadlines never come sooner
        return deadline

    def disarm(self, deadline):
        with self._cond:
            self._armed.discard(deadline)

    def stop(self):
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self):
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                for d in [d for d in self._armed if d.fire_at <= now]:
                    sock = d.sock or (d.conn.sock if d.conn is not None else None)
                    if sock is None:  # still connecting (bounded by the socket timeout): look again shortly
                        d.fire_at = now + 0.05
                        continue
                    try:
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self._armed.discard(d)
                wake = min((d.fire_at for d in self._armed), default=None)
                self._cond.wait(None if wake is None else max(0.0, wake - now))


def _public_url(url):
    """A URL fit for messages and manifests: no user:password@, no query string."""
    parts = urllib.parse.urlsplit(str(url))
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _host_header(host, port, scheme):
    name = f"[{host}]" if ":" in host else host
    return name if port == (443 if scheme == "https" else 80) else f"{name}:{port}"


def _proxy_for(scheme, host):
    """(proxy URL, Proxy-Authorization value or None) from the environment, or None."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    pp = urllib.parse.urlsplit(proxy)
    auth = None
    if pp.username:
        token = f"{urllib.parse.unquote(pp.username)}:{urllib.parse.unquote(pp.password or '')}"
        auth = "Basic " + base64.b64encode(token.encode()).decode()
    return proxy, auth


def _retry_after(headers):
    try:  # a missing header, or no headers at all, is a TypeError here
        return float(headers["Retry-After"])
    except (TypeError, ValueError):
        return None
