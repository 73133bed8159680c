"""The openai backend against a local OpenAI-compatible server on 127.0.0.1 (ephemeral port)."""
import base64
import io
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.helpers import infer as run
from tests.fixture_dataset import write_fixture_dataset

KEY = "sk-test-secret-123456"


class FakeServer:
    """Chat completions endpoint: checks auth, fails some calls with 429/500, counts concurrency."""

    def __init__(self, fail_plan=None, delay=0.02, always_fail_marker=None, bad_request_marker=None,
                 models=("served-model",), refuse_templates=False, redirect_to=None, drip_seconds=None,
                 keep_alive=False, close_after_reply=False, decode_images=False):
        self.fail_plan = dict(fail_plan or {})   # call number -> status
        self.models = list(models)               # what GET /v1/models lists
        self.refuse_templates = refuse_templates  # answer 400 to a request carrying chat_template, as vLLM does
        self.redirect_to = redirect_to           # answer every POST with 307 to this URL
        self.drip_seconds = drip_seconds         # send the reply one byte at a time over this long
        self.close_after_reply = close_after_reply  # HTTP/1.1 without "Connection: close", then hang up
        self.decode_images = decode_images       # decode each image as vLLM does; 400 when that fails
        self.connections = set()                 # client (host, port) pairs seen
        self.raw_bodies = []
        self.probes = []                         # text-only start-up requests
        self.model_checks = 0
        self.drip_cut = False
        self.delay = delay
        self.always_fail_marker = always_fail_marker
        self.bad_request_marker = bad_request_marker
        self.lock = threading.Lock()
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies = []
        self.auth_failures = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def log_message(self, *args):
                pass

            def _reply(self, status, doc, headers=()):
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path != "/v1/models":
                    return self._reply(404, {"error": "not found"})
                with server.lock:
                    server.model_checks += 1
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    return self._reply(401, {"error": "bad key"})
                self._reply(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]})

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                body = json.loads(raw)
                with server.lock:
                    server.connections.add(self.client_address)
                if server.redirect_to:
                    with server.lock:
                        server.calls += 1
                    return self._reply(307, {}, [("Location", server.redirect_to)])
                if isinstance(body["messages"][-1]["content"], str):  # the start-up template check
                    server.probes.append(body)
                    if server.refuse_templates and "chat_template" in body:
                        return self._reply(400, {"error": "Chat template is passed with request, but "
                                                          "--trust-request-chat-template is not set."})
                    return self._reply(200, {"choices": [{"index": 0, "message": {"role": "assistant",
                                                                                  "content": "OK"}}]})
                if server.drip_seconds:
                    return self._drip(server.drip_seconds)
                with server.lock:
                    server.calls += 1
                    n = server.calls
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.bodies.append(body)
                    server.raw_bodies.append(raw)
                try:
                    time.sleep(server.delay)
                    reply = self._decide(n, body)
                finally:
                    # Leave the in-flight count before the reply goes out: once the client has the
                    # reply it may send its next request, which must not overlap this one in the count.
                    with server.lock:
                        server.in_flight -= 1
                self._reply(*reply)
                if server.close_after_reply:
                    self.close_connection = True

            def _drip(self, seconds):
                data = json.dumps({"choices": [{"index": 0, "message": {"content": "x" * 20}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for i in range(len(data)):
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                        time.sleep(seconds / len(data))
                except OSError:  # the client hung up at its deadline
                    server.drip_cut = True

            def _decide(self, n, body):
                if self.path != "/v1/chat/completions":
                    return 404, {"error": "not found"}
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    with server.lock:
                        server.auth_failures += 1
                    return 401, {"error": "bad key"}
                text = body["messages"][-1]["content"][1]["text"]
                if server.decode_images:
                    url = body["messages"][-1]["content"][0]["image_url"]["url"]
                    try:
                        Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).load()
                    except Exception as exc:
                        return 400, {"error": {"message": f"Failed to load image: {exc}"}}
                if server.bad_request_marker and server.bad_request_marker in text:
                    return 400, {"error": "invalid request"}
                if server.always_fail_marker and server.always_fail_marker in text:
                    return 503, {"error": "overloaded"}
                status = server.fail_plan.get(n)
                if status == 429:
                    return 429, {"error": "slow down"}, [("Retry-After", "0")]
                if status:
                    return status, {"error": "boom"}
                answer = "There is 1 instance. {<1><2><3><4>}"
                return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("oaidata")
    generated, image_root, rows = write_fixture_dataset(str(root), n_images=3, seed=5)
    return generated, rows["test"]


def _argv(generated, url, out, *extra):
    return ["--dataset", generated, "--backend", "openai", "--model", "served-model", "--adapter", "qwen2-vl",
            "--base-url", url, "--api-key-env", "SARCHAT_TEST_KEY", "--output", str(out), "--no-progress",
            "--concurrency", "3", "--retry-base", "0.01", "--retry-max-wait", "0.05", *extra]


def _all_text_under(folder):
    out = []
    for dirpath, _, names in os.walk(folder):
        for n in names:
            with open(os.path.join(dirpath, n), "rb") as fh:
                out.append(fh.read())
    return b"\n".join(out)


def test_retries_auth_concurrency_and_secrecy(dataset, tmp_path, monkeypatch):
    generated, rows = dataset
    monkeypatch.setenv("SARCHAT_TEST_KEY", KEY)
    with FakeServer(fail_plan={1: 429, 2: 500, 3: 429, 5: 502, 8: 503}) as srv:
        assert run(_argv(generated, srv.url, tmp_path)) == 0
    preds = pq.read_table(tmp_path / "predictions.parquet").to_pylist()
    assert len(preds) == len(rows) and not any(p["error"] for p in preds)
    assert srv.auth_failures == 0
    assert srv.calls == len(rows) + 5            # each failure retried once
    assert 1 <= srv.max_in_flight <= 3           # bounded by --concurrency
    body = srv.bodies[-1]
    assert body["model"] == "served-model" and body["temperature"] == 0.0 and body["seed"] == 0
    assert body["skip_special_tokens"] is False  # vLLM extra for Qwen2-VL's grounding tokens
    assert body["messages"][-1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["backend"] == "openai" and manifest["backend_info"]["endpoint"] == srv.url
    assert KEY.encode() not in _all_text_under(tmp_path)


def test_give_up_then_resume_and_non_retryable(dataset, tmp_path, monkeypatch):
    generated, rows = dataset
    monkeypatch.setenv("SARCHAT_TEST_KEY", KEY)
    marker = "[count]"
    n_marked = sum(1 for r in rows if marker in r["question"])
    assert n_marked
    with FakeServer(always_fail_marker=marker) as srv:
        run(_argv(generated, srv.url, tmp_path, "--max-retries", "2"))
    preds = {p["id"]: p for p in pq.read_table(tmp_path / "predictions.parquet").to_pylist()}
    failed = {i for i, p in preds.items() if p["error"]}
    assert len(failed) == n_marked
    assert all("HTTP 503" in preds[i]["error"] and "3 attempts" in preds[i]["error"] for i in failed)
    assert srv.calls == len(rows) + 2 * n_marked

    with FakeServer() as srv2:  # healthy endpoint: only the failures are sent again
        run(_argv(generated, srv2.url, tmp_path))
    assert srv2.calls == n_marked
    preds = pq.read_table(tmp_path / "predictions.parquet").to_pylist()
    assert len(preds) == len(rows) and not any(p["error"] for p in preds)

    out2 = tmp_path / "bad"
    with FakeServer(bad_request_marker="[refer]") as srv3:
        run(_argv(generated, srv3.url, out2))
    n_refer = sum(1 for r in rows if "[refer]" in r["question"])
    assert srv3.calls == len(rows)  # a 400 is not retried
    preds = pq.read_table(out2 / "predictions.parquet").to_pylist()
    assert sum(1 for p in preds if p["error"] and "HTTP 400" in p["error"]) == n_refer


def test_missing_key_stops_at_start_up(dataset, tmp_path, monkeypatch, capsys):
    generated, rows = dataset
    monkeypatch.delenv("SARCHAT_TEST_KEY", raising=False)
    with FakeServer() as srv:
        code = run(_argv(generated, srv.url, tmp_path, "--limit", "2", "--max-retries", "0"))
    assert code == 1 and srv.calls == 0 and srv.model_checks == 1
    err = capsys.readouterr().err
    assert err == (f"sarchat infer: error: the endpoint {srv.url}/models refused the request with no key "
                   "($SARCHAT_TEST_KEY is unset): HTTP 401\n")
    assert not (tmp_path / "store").exists()


def _one_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_unreachable_endpoint_or_unserved_model_is_one_line(dataset, tmp_path, monkeypatch, capsys):
    generated, _ = dataset
    monkeypatch.setenv("SARCHAT_TEST_KEY", KEY)
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    assert run(_argv(generated, url, tmp_path / "a", "--max-retries", "1")) == 1
    err = _one_line(capsys)
    assert err.startswith(f"sarchat infer: error: cannot reach the endpoint {url}/models (--base-url): connection error")
    with FakeServer(models=["other-model"]) as srv:
        assert run(_argv(generated, srv.url, tmp_path / "b")) == 2
    assert srv.calls == 0
    assert _one_line(capsys) == (f"sarchat infer: error: --model served-model: {srv.url}/models does not serve it "
                                 "(it serves other-model)\n")


def test_chat_template_and_processor_settings_are_sent(dataset, tmp_path, monkeypatch, capsys):
    generated, rows = dataset
    monkeypatch.setenv("SARCHAT_TEST_KEY", KEY)
    from sarchat.transforms.adapters import get_adapter

    with FakeServer() as srv:  # qwen2-vl: no template of its own, processor settings
        assert run(_argv(generated, srv.url, tmp_path / "q", "--limit", "3")) == 0
    assert srv.probes == [] and all("chat_template" not in b for b in srv.bodies)
    assert all(b["mm_processor_kwargs"] == {"size": {"shortest_edge": 784, "longest_edge": 1003520}}
               for b in srv.bodies)

    template = tmp_path / "t.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    argv = _argv(generated, "URL", tmp_path / "l", "--limit", "3")
    argv[argv.index("qwen2-vl")] = "llava-1.5"
    with FakeServer() as srv:
        assert run([srv.url if a == "URL" else a for a in argv]) == 0
        assert run([srv.url if a == "URL" else a for a in argv] + ["--chat-template", str(template),
                                                                    "--output", str(tmp_path / "l2")]) == 0
    llava = get_adapter("llava-1.5").chat_template
    assert [b["chat_template"] for b in srv.bodies] == [llava] * 3 + [template.read_text()] * 3
    assert len(srv.probes) == 2 and srv.probes[0]["chat_template"] == llava  # checked at start-up
    keys = [json.loads((tmp_path / d / "manifest.json").read_text())["run_key"] for d in ("q", "l", "l2")]
    assert len(set(keys)) == 3
    capsys.readouterr()

    with FakeServer(refuse_templates=True) as srv:  # vLLM without --trust-request-chat-template
        assert run([srv.url if a == "URL" else a for a in argv] + ["--output", str(tmp_path / "r")]) == 2
    assert srv.calls == 0 and not (tmp_path / "r" / "predictions.parquet").exists()
    err = _one_line(capsys)
    assert "refuses the chat template sent with requests (HTTP 400" in err and "--trust-request-chat-template" in err

    assert run(["http://127.0.0.1:9/v1" if a == "URL" else a for a in argv] + ["--no-vllm-extras"]) == 2
    assert _one_line(capsys) == ("sarchat infer: error: the llava-1.5 adapter needs its chat template sent with "
                                 "each request (vLLM's chat_template field), which --no-vllm-extras forbids; "
                                 "drop --no-vllm-extras\n")


def test_redirects_are_not_followed_and_the_key_stays_home(dataset, tmp_path, monkeypatch, capsys):
    generated, rows = dataset
    monkeypatch.setenv("SARCHAT_TEST_KEY", KEY)
    with FakeServer() as elsewhere:
        with FakeServer(redirect_to=elsewhere.url + "/chat/completions") as srv:
            assert run(_argv(generated, srv.url, tmp_path, "--limit", "2")) == 1
    assert srv.calls == 2 and elsewhere.calls == 0 and elsewhere.auth_failures == 0
    preds = pq.read_table(tmp_path / "predictions.parquet").to_pylist()
    assert all(p["prediction"] == "" and p["error"] == f"HTTP 307: redirect to {elsewhere.url}/chat/completions "
               "not followed (requests go to --base-url only)" for p in preds)
    assert "2 of 2 selected samples have no prediction" in capsys.readouterr().err


def test_request_timeout_is_a_total_deadline(dataset, tmp_path, monkeypatch):
    generated, rows = dataset
    monkeypatch.setenv("SARCHAT_TEST_KEY", KEY)
    # every byte arrives well within any per-read timeout, the whole reply would take 20 s
    with FakeServer(drip_seconds=20) as srv:
        assert run(_argv(generated, srv.url, tmp_path, "--limit", "1", "--max-retries", "0",
                         "--request-timeout", "0.5")) == 1
        deadline = time.time() + 5
        while not srv.drip_cut and time.time() < deadline:
            time.sleep(0.05)
    (pred,) = pq.read_table(tmp_path / "predictions.parquet").to_pylist()
    assert pred["error"].startswith("no complete reply within --request-timeout 0.5 s")
    assert srv.drip_cut  # the client hung up mid-reply


def test_connections_are_kept_alive_and_replaced_when_the_server_hangs_up(dataset, tmp_path, monkeypatch):
    generated, rows = dataset
    monkeypatch.setenv("SARCHAT_TEST_KEY", KEY)
    with FakeServer(keep_alive=True, delay=0) as srv:
        assert run(_argv(generated, srv.url, tmp_path / "a")) == 0
    assert srv.calls == len(rows) > 8
    assert len(srv.connections) <= 3  # one per worker thread (--concurrency 3), for the whole run
    # A server that hangs up after each reply without saying so: every reused connection is dead;
    # the request goes out again on a new one, not counted as a retry (--max-retries 0).
    with FakeServer(keep_alive=True, close_after_reply=True, delay=0) as srv:
        assert run(_argv(generated, srv.url, tmp_path / "b", "--max-retries", "0")) == 0
    assert srv.calls == len(rows) == len(srv.connections)
    preds = pq.read_table(tmp_path / "b" / "predictions.parquet").to_pylist()
    assert len(preds) == len(rows) and not any(p["error"] for p in preds)


def test_request_bodies_are_what_json_dumps_of_the_whole_body_gives(dataset, tmp_path, monkeypatch):
    """The cached, spliced body is byte for byte the body built the plain way (image read and
    decoded per sample, json.dumps of the whole request)."""
    from sarchat.inference.backends.openai_backend import OpenAIBackend
    from sarchat.inference.dataset import image_data_url, resolve_image_root
    from sarchat.inference.run import parse_config
    from sarchat.transforms.adapters import get_adapter

    generated, rows = dataset
    monkeypatch.setenv("SARCHAT_TEST_KEY", KEY)
    with FakeServer(keep_alive=True, delay=0) as srv:
        argv = _argv(generated, srv.url, tmp_path)
        assert run(argv) == 0
    adapter = get_adapter("qwen2-vl")
    probe = OpenAIBackend(parse_config(argv), adapter)
    fields = {**probe.sampling(), **probe._extras()}
    probe.close()
    root = resolve_image_root(generated)
    want = []
    for row in rows:
        with open(os.path.join(root, row["image_path"]), "rb") as fh:
            url = image_data_url(fh.read(), pad_to_multiple=adapter.pad_to_multiple)
        body = {"model": "served-model", "messages": adapter.build_messages(row, url), **fields}
        want.append(json.dumps(body).encode("utf-8"))
    assert sorted(srv.raw_bodies) == sorted(want)


def _garble_huffman_table(path):
    data = open(path, "rb").read()
    at = data.find(b"\xff\xc4")
    with open(path, "wb") as fh:
        fh.write(data[:at + 5] + b"\xff" * 16 + data[at + 21:])


def test_bad_images_are_error_rows_never_missing_samples(tmp_path, monkeypatch, capsys):
    """A truncated JPEG and one whose header opens but whose Huffman table is garbage are both
    caught before sending (no request: a vLLM server would answer the second on a blank image,
    tests/test_real_vllm.py); every sample has its row, the good image is answered."""
    monkeypatch.setenv("SARCHAT_TEST_KEY", KEY)
    generated, image_root, rows = write_fixture_dataset(str(tmp_path / "data"), n_images=3, seed=5,
                                                        image_ext="jpg")
    rows = rows["test"]
    paths = sorted({r["image_path"] for r in rows})
    truncated, garbled, good = (os.path.join(image_root, p) for p in paths)
    data = open(truncated, "rb").read()
    with open(truncated, "wb") as fh:
        fh.write(data[:len(data) // 2])
    _garble_huffman_table(garbled)
    with FakeServer(keep_alive=True, delay=0, decode_images=True) as srv:
        assert run(_argv(generated, srv.url, tmp_path / "run")) == 1
    by_image = {p: [r["id"] for r in rows if r["image_path"] == p] for p in paths}
    preds = {p["id"]: p for p in pq.read_table(tmp_path / "run" / "predictions.parquet").to_pylist()}
    assert sorted(preds) == sorted(r["id"] for r in rows)  # every sample has a row
    assert all(preds[i]["error"].startswith(f"corrupt image {truncated}: OSError: image file is truncated")
               for i in by_image[paths[0]])
    assert all(preds[i]["error"].startswith(f"corrupt image {garbled}: OSError: broken data stream")
               for i in by_image[paths[1]])
    assert all(preds[i]["error"] is None and preds[i]["prediction"] for i in by_image[paths[2]])
    assert srv.calls == len(by_image[paths[2]])  # nothing sent for the bad files
    assert f"{len(by_image[paths[0]]) + len(by_image[paths[1]])} of {len(rows)} selected samples have no " \
           "prediction" in capsys.readouterr().err
