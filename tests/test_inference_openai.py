"""The openai backend against a local OpenAI-compatible server on 127.0.0.1 (ephemeral port)."""
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest

from sarchat.inference.run import run
from sarchat.synthetic.fixture import write_fixture_dataset

KEY = "sk-test-secret-123456"


class FakeServer:
    """Chat completions endpoint: checks auth, fails some calls with 429/500, counts concurrency."""

    def __init__(self, fail_plan=None, delay=0.02, always_fail_marker=None, bad_request_marker=None):
        self.fail_plan = dict(fail_plan or {})   # call number -> status
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

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.calls += 1
                    n = server.calls
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.bodies.append(body)
                try:
                    time.sleep(server.delay)
                    reply = self._decide(n, body)
                finally:
                    # Leave the in-flight count before the reply goes out: once the client has the
                    # reply it may send its next request, which must not overlap this one in the count.
                    with server.lock:
                        server.in_flight -= 1
                self._reply(*reply)

            def _decide(self, n, body):
                if self.path != "/v1/chat/completions":
                    return 404, {"error": "not found"}
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    with server.lock:
                        server.auth_failures += 1
                    return 401, {"error": "bad key"}
                text = body["messages"][-1]["content"][1]["text"]
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


def test_missing_key_sends_no_auth(dataset, tmp_path, monkeypatch):
    generated, rows = dataset
    monkeypatch.delenv("SARCHAT_TEST_KEY", raising=False)
    with FakeServer() as srv:
        run(_argv(generated, srv.url, tmp_path, "--limit", "2", "--max-retries", "0"))
    assert srv.auth_failures == 2
    preds = pq.read_table(tmp_path / "predictions.parquet").to_pylist()
    assert len(preds) == 2 and all("HTTP 401" in p["error"] for p in preds)
