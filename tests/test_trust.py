"""Trust by mechanism (issue 19): one table per class, each row the `sarchat` command in a subprocess
as a user runs it, asserting the exit status, the one error line and that nothing of the user's or
of a finished run changed.

Runs at the same time are forced, never timed: a process is stopped at a named point
(transforms/ownership.py `pause_point`, two pipe descriptors it inherits), the folder is changed
meanwhile, and the process is resumed. A process that dies before the point closes the pipe, so
the test never waits on a dead process.
"""
import json
import os
import shutil
import socket
import subprocess

import pytest

from tests import cli_process
from tests.test_bad_input import (check_error_line, generated, run_sarchat,  # noqa: F401
                                  tree_hashes, user_env)


class Paused:
    """`sarchat ARGS` started (forked from the worker's warm process, tests/cli_process.py, with
    Ctrl-C as in a terminal) and stopped at `point` (`reached` is False when it ended before)."""

    def __init__(self, args, point, cwd, env):
        reached_r, reached_w = os.pipe()
        go_r, go_w = os.pipe()
        env = dict(env, SARCHAT_TEST_PAUSE=f"{point}:{reached_w}:{go_r}")
        self.proc = cli_process.start_sarchat(list(args), cwd=cwd, env=env, pass_fds=(reached_w, go_r))
        os.close(reached_w)
        os.close(go_r)
        self.reached = os.read(reached_r, 1) == b"x"
        os.close(reached_r)
        self.go = go_w

    def resume(self, timeout=600):
        try:
            os.write(self.go, b"g")
        except BrokenPipeError:
            pass
        os.close(self.go)
        return self.proc.completed(timeout)


@pytest.fixture
def case(tmp_path, generated):  # noqa: F811
    """A case folder with a copy of the session's dataset ({gen}), its oracle predictions ({preds})
    and the source images it was made from ({data}, shared, read only)."""
    tmp = tmp_path / "case"
    tmp.mkdir()
    shutil.copytree(generated["gen"], str(tmp / "gen"))
    shutil.copy(generated["preds"], str(tmp / "predictions.parquet"))
    return {"tmp": str(tmp), "gen": str(tmp / "gen"), "preds": str(tmp / "predictions.parquet"),
            "data": generated["data"], "env": user_env(tmp)}


def gen_args(c, out, *extra):
    return ["generate", "--input", c["data"], "--output", out, "--formats", "parquet", "--identify-variants", "2",
            *extra]


def score_args(c, out, *preds):
    return ["score", "--dataset", c["gen"], "--predictions", *(preds or [c["preds"]]), "--output", out,
            "--samples", "0", "--bootstrap", "0", "--plots", "none"]


def stats_args(c, out):
    return ["stats", "--dataset", c["gen"], "--output", out, "--plots", "none"]


def sarchat(c, args, **kw):
    return run_sarchat(args, cwd=c["tmp"], env=c["env"], **kw)


# ---------------------------------------------------------------------------------------------
# 1. Readers and writers of one folder at the same time


CONCURRENT = [
    # (id, the first command and where it stops, the second command, what the first must end with,
    #  what the second must end with: (exit, names in its one line) or exit 0)
    ("two generates into one folder", lambda c: gen_args(c, c["tmp"] + "/out"), "generate-claimed",
     lambda c: gen_args(c, c["tmp"] + "/out", "--seed", "5"), 0, (1, ["is being written by `sarchat generate`",
                                                                     "pid", "/out"])),
    ("two scores into one folder", lambda c: score_args(c, c["tmp"] + "/scores"), "score-claimed",
     lambda c: score_args(c, c["tmp"] + "/scores"), 0, (1, ["is being written by `sarchat score`"])),
    ("score while generate rewrites its dataset", lambda c: gen_args(c, c["gen"], "--seed", "5"), "generate-claimed",
     lambda c: score_args(c, c["tmp"] + "/scores"), 0, (1, ["/gen is being written by `sarchat generate`"])),
    ("stats while generate rewrites its dataset", lambda c: gen_args(c, c["gen"], "--seed", "5"), "generate-claimed",
     lambda c: stats_args(c, c["tmp"] + "/st"), 0, (1, ["/gen is being written by `sarchat generate`"])),
    ("score, and the dataset rewritten while it reads", lambda c: score_args(c, c["tmp"] + "/scores"), "score-claimed",
     lambda c: gen_args(c, c["gen"], "--seed", "5"), (1, ["/gen changed while it was being read"]), 0),
    ("stats, and the dataset rewritten while it reads", lambda c: stats_args(c, c["tmp"] + "/st"), "stats-claimed",
     lambda c: gen_args(c, c["gen"], "--seed", "5"), (1, ["/gen changed while it was being read"]), 0),
    ("infer, and the dataset rewritten while it reads",
     lambda c: ["infer", "--dataset", c["gen"], "--backend", "oracle", "--output", c["tmp"] + "/run",
                "--image-root", c["data"], "--no-progress"], "read-started",
     lambda c: gen_args(c, c["gen"], "--seed", "5"), (1, ["/gen changed while it was being read"]), 0),
]


def _expect(proc, command, expected):
    if expected == 0:
        assert proc.returncode == 0, proc.stderr
    else:
        check_error_line(proc, command, expected[0], expected[1])


@pytest.mark.parametrize("row", CONCURRENT, ids=[r[0] for r in CONCURRENT])
def test_concurrent_runs_are_refused_or_detected(case, row):
    _, first, point, second, first_ends, second_ends = row
    c = case
    first_args, second_args = first(c), second(c)
    paused = Paused(first_args, point, c["tmp"], c["env"])
    assert paused.reached, paused.resume().stderr
    try:
        other = sarchat(c, second_args)
    finally:
        done = paused.resume()
    _expect(other, second_args[0], second_ends)
    _expect(done, first_args[0], first_ends)
    if first_args[0] in ("score", "stats") and first_ends != 0:  # a detected mix leaves no results behind
        out = first_args[first_args.index("--output") + 1]
        assert not os.path.exists(out) or not [n for _, _, ns in os.walk(out) for n in ns if n != ".sarchat-owner.json"]


def test_a_refused_generate_leaves_the_running_one_complete(case):
    """The second writer changes nothing: the first completes as if alone."""
    c = case
    paused = Paused(gen_args(c, c["tmp"] + "/out"), "generate-claimed", c["tmp"], c["env"])
    assert paused.reached
    try:
        check_error_line(sarchat(c, gen_args(c, c["tmp"] + "/out", "--seed", "9")), "generate", 1,
                         ["is being written"])
    finally:
        assert paused.resume().returncode == 0
    assert sarchat(c, gen_args(c, c["tmp"] + "/clean")).returncode == 0
    assert tree_hashes(c["tmp"] + "/out") == tree_hashes(c["tmp"] + "/clean")


def test_a_lock_of_a_dead_process_is_taken_over(case):
    c = case
    dead = subprocess.Popen(["true"])
    dead.wait()
    os.makedirs(c["tmp"] + "/out")
    with open(c["tmp"] + "/out/.sarchat-lock", "w") as f:
        json.dump({"command": "generate", "pid": dead.pid, "host": socket.gethostname(), "started": 0}, f)
    with open(c["tmp"] + "/out/.sarchat-owner.json", "w") as f:
        json.dump({"command": "generate", "files": []}, f)
    proc = sarchat(c, gen_args(c, c["tmp"] + "/out"))
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(c["tmp"] + "/out/manifest.json") and not os.path.exists(c["tmp"] + "/out/.sarchat-lock")


# ---------------------------------------------------------------------------------------------
# 2. Every command owns what it writes


def _user_folder(c, name, files):
    folder = os.path.join(c["tmp"], name)
    os.makedirs(folder, exist_ok=True)
    for rel, text in files.items():
        with open(os.path.join(folder, rel), "w") as f:
            f.write(text)
    return folder


def _other_dataset(c):
    shutil.copytree(c["gen"], c["tmp"] + "/other")
    return c["tmp"] + "/other"


def _older_dataset(c):
    """A dataset written before the ownership marker existed."""
    os.remove(os.path.join(_other_dataset(c), ".sarchat-owner.json"))
    return c["tmp"] + "/other"


def _users_run_folder(c):
    return _user_folder(c, "mine", {"manifest.json": '{"my": "experiment"}', "predictions.jsonl": '{"id": 1}\n'})


def _thesis(c):
    return _user_folder(c, "mine", {"thesis.tex": "years of work"})


def _a_score_folder(c):
    assert sarchat(c, score_args(c, c["tmp"] + "/scores")).returncode == 0
    return c["tmp"] + "/scores"


INFER = ["infer", "--dataset", "{gen}", "--backend", "oracle", "--image-root", "{data}", "--no-progress", "--output"]
OWNED = [
    ("infer into another dataset's folder", _other_dataset, INFER, "infer", ["/other", "holds the output of `sarchat generate`"]),
    ("infer into an older dataset's folder", _older_dataset, INFER, "infer", ["/other", "was not written by `sarchat infer`"]),
    ("infer into a user's run folder", _users_run_folder, INFER, "infer", ["/mine", "was not written by `sarchat infer`"]),
    ("score into a user's folder", _thesis, ["score", "--dataset", "{gen}", "--predictions", "{preds}", "--samples", "0",
                                            "--bootstrap", "0", "--plots", "none", "--output"], "score", ["/mine", "thesis.tex"]),
    ("stats into a user's folder", _thesis, ["stats", "--dataset", "{gen}", "--plots", "none", "--output"], "stats",
     ["/mine", "was not written by `sarchat stats`"]),
    ("stats into a score folder", _a_score_folder, ["stats", "--dataset", "{gen}", "--plots", "none", "--output"], "stats",
     ["/scores", "holds the output of `sarchat score`"]),
    ("generate into a user's folder", _thesis, ["generate", "--input", "{data}", "--formats", "parquet", "--output"],
     "generate", ["/mine", "was not written by `sarchat generate`"]),
    ("export into a user's folder", _thesis, ["export", "lmms-eval", "--dataset", "{gen}", "--output"], "export",
     ["/mine", "thesis.tex"]),
    ("export into a dataset folder", _other_dataset, ["export", "lmms-eval", "--dataset", "{gen}", "--output"], "export",
     ["/other", "holds the output of `sarchat generate`"]),
    ("export into an older dataset folder", _older_dataset, ["export", "lmms-eval", "--dataset", "{gen}", "--output"],
     "export", ["/other", "was not written by `sarchat export`"]),
]


@pytest.mark.parametrize("row", OWNED, ids=[r[0] for r in OWNED])
def test_a_command_writes_only_an_empty_folder_or_its_own(case, row):
    _, setup, argv, command, names = row
    c = case
    target = setup(c)
    before = tree_hashes(c["tmp"])
    proc = sarchat(c, [a.format(**c) for a in argv] + [target])
    check_error_line(proc, command, 1, names)
    assert tree_hashes(c["tmp"]) == before


# ---------------------------------------------------------------------------------------------
# 3. Nothing stale from an earlier run of the same command


def _renamed_predictions(c, model):
    import pyarrow.parquet as pq

    path = os.path.join(c["tmp"], f"{model}.jsonl")
    with open(path, "w") as f:
        for r in pq.read_table(c["preds"]).to_pylist():
            f.write(json.dumps({"id": r["id"], "prediction": r["prediction"], "model": model}) + "\n")
    return path


def test_a_rescore_with_other_models_leaves_nothing_of_the_old_ones(case):
    c = case
    out = c["tmp"] + "/scores"
    first = sarchat(c, score_args(c, out, _renamed_predictions(c, "alpha"), _renamed_predictions(c, "beta")))
    assert first.returncode == 0, first.stderr
    assert os.path.exists(os.path.join(out, "beta", "metrics.json"))
    with open(os.path.join(out, "notes.txt"), "w") as f:
        f.write("the user's notes")
    again = sarchat(c, score_args(c, out, _renamed_predictions(c, "gamma")))
    assert again.returncode == 0, again.stderr
    assert sorted(os.listdir(out)) == sorted([".sarchat-owner.json", "gamma", "leaderboard.json", "leaderboard.md",
                                              "notes.txt", "report.html", "report.md"]
                                             + (["rejected.jsonl"] if os.path.exists(out + "/rejected.jsonl") else []))
    assert [r["model"] for r in json.load(open(os.path.join(out, "leaderboard.json")))] == ["gamma"]
    assert open(os.path.join(out, "notes.txt")).read() == "the user's notes"
    clean = c["tmp"] + "/clean"
    assert sarchat(c, score_args(c, clean, c["tmp"] + "/gamma.jsonl")).returncode == 0
    mine = tree_hashes(out)
    mine.pop("notes.txt")
    theirs = tree_hashes(clean)
    for t in (mine, theirs):
        t.pop(".sarchat-owner.json")
        t.pop("report.html", None)  # names its output folder
        t.pop("report.md", None)
    assert mine == theirs


# ---------------------------------------------------------------------------------------------
# 4. A truncated or corrupt compressed file is never read as complete
# 5. One decoder for every input


def _oracle_lines(c, limit=None):
    import pyarrow.parquet as pq

    rows = pq.read_table(c["preds"]).to_pylist()[:limit]
    return [json.dumps({"id": r["id"], "prediction": r["prediction"], "model": "m"}) for r in rows]


def _write(c, name, data):
    path = os.path.join(c["tmp"], name)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def cut_gzip(c):
    import gzip

    data = gzip.compress(("\n".join(_oracle_lines(c)) + "\n").encode())
    return _write(c, "preds.jsonl.gz", data[: len(data) // 2])


def not_gzip(c):
    return _write(c, "preds.jsonl.gz", "\n".join(_oracle_lines(c)) + "\n")


def torn_tsv(c):
    return _write(c, "model_sarchat.tsv", 'index\tprediction\n1\t"an answer torn by the end of the file\n')


def a_folder(c):
    os.makedirs(os.path.join(c["tmp"], "preds.jsonl"))
    return os.path.join(c["tmp"], "preds.jsonl")


FILE_LEVEL = [  # a prediction file that cannot be read at all: exit 1, one line naming it
    ("jsonl.gz cut in half", cut_gzip, ["preds.jsonl.gz", "cut short"]),
    (".gz that is not gzip", not_gzip, ["preds.jsonl.gz", "not a valid gzip file"]),
    ("TSV torn inside a quoted field", torn_tsv, ["model_sarchat.tsv", "not a well-formed TSV"]),
    ("a folder named like a prediction file", a_folder, ["preds.jsonl"]),
]


@pytest.mark.parametrize("row", FILE_LEVEL, ids=[r[0] for r in FILE_LEVEL])
def test_an_unreadable_prediction_file_is_one_line(case, row):
    _, make, names = row
    c = case
    path = make(c)
    before = tree_hashes(c["tmp"])
    proc = sarchat(c, score_args(c, c["tmp"] + "/scores", path))
    check_error_line(proc, "score", 1, names)
    assert tree_hashes(c["tmp"]) == before


def _bad_lines(c):
    good = _oracle_lines(c)
    first = json.loads(good[0])
    bad = [
        json.dumps(dict(first, prediction="\ud800 lone")),                      # escaped lone surrogate
        json.dumps(dict(first, prediction=["{<1><2><3><4>}"])),                 # a list is not text
        json.dumps(dict(first, prediction={"answer": "ship"})),                 # nor an object
        '{"id": "x", "prediction": ' + "[" * 100000 + "]" * 100000 + "}",       # deeper than recursion
        '{"id": "y", "prediction": "a", "latency_s": 1e999}',                   # beyond float
    ]
    return good[1:] + bad, len(bad)


def test_hostile_prediction_lines_are_counted_rejects(case):
    """Each bad line is a counted reject (malformed_row), the others are scored; exit 0."""
    c = case
    lines, n_bad = _bad_lines(c)
    big = json.loads(lines[0])
    lines[0] = json.dumps(dict(big, prediction=big["prediction"] + " " * 200000))  # beyond csv's field limit
    path = _write(c, "m.jsonl", "\n".join(lines) + "\n")
    tsv = _write(c, "m2_sarchat.tsv", "index\tprediction\n" + "\n".join(
        f"{json.loads(l)['id']}\t{'x' * 200000 if i == 0 else 'ship'}" for i, l in enumerate(lines[:3])) + "\n")
    out = c["tmp"] + "/scores"
    proc = sarchat(c, score_args(c, out, path, tsv))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rejected = [json.loads(l) for l in open(os.path.join(out, "m", "rejected.jsonl"))]
    assert sum(1 for r in rejected if r["reason"] == "malformed_row") == n_bad, rejected


def _coco(c, mutate, name="test.json"):
    from tests.helpers import known_dataset, write_coco

    root = os.path.join(c["tmp"], "root")
    images, annotations = known_dataset()
    write_coco(root, "test", images, annotations)
    path = os.path.join(root, "Annotations", "test.json")
    text = mutate(open(path).read(), json.load(open(path)))
    with open(path, "w") as f:
        f.write(text)
    return root


def _first_file_name_surrogate(text, doc):
    doc["images"][0]["file_name"] = "\ud800.png"
    return json.dumps(doc)


def _deep(text, doc):
    return text[:-1] + ', "info": ' + "[" * 100000 + "]" * 100000 + "}"


COCO_FILES = [  # generate: the file as a whole is refused with one line naming it (exit 2, as any bad annotation file)
    ("lone surrogate in a file_name", _first_file_name_surrogate, ["test.json", "lone UTF-16 surrogate"]),
    ("nesting deeper than the recursion limit", _deep, ["test.json", "nested too deeply"]),
]


@pytest.mark.parametrize("row", COCO_FILES, ids=[r[0] for r in COCO_FILES])
def test_a_hostile_annotation_file_is_one_line(case, row):
    _, mutate, names = row
    c = case
    root = _coco(c, mutate)
    before = tree_hashes(c["tmp"])
    proc = sarchat(c, ["generate", "--input", root, "--output", c["tmp"] + "/out", "--splits", "test"])
    check_error_line(proc, "generate", 2, names)
    assert tree_hashes(c["tmp"]) == before


def _boxes(text, doc):
    anns = doc["annotations"]
    anns[0]["bbox"] = ["1", "2", "30", "40"]        # strings are not numbers (docs/rules.md section 1)
    anns[1]["bbox"] = [1, 2, 10 ** 400, 40]         # an integer beyond float
    anns[2]["bbox"] = [0, 0, 1e300, 1e300]          # a valid box whose area is beyond float
    doc["images"][-1]["width"] = 10 ** 30           # a size beyond int64
    return json.dumps(doc)


def test_boxes_out_of_range_are_rejects_and_stats_handles_what_generate_accepts(case):
    c = case
    root = _coco(c, _boxes)
    out = c["tmp"] + "/out"
    proc = sarchat(c, ["generate", "--input", root, "--output", out, "--splits", "test", "--formats", "parquet"])
    assert proc.returncode == 0, proc.stderr
    reasons = [json.loads(l)["reason"] for l in open(os.path.join(out, "rejects", "test.jsonl"))]
    assert "malformed_bbox" in reasons and "non_finite" in reasons and "bad_image_size" in reasons
    for args in (["stats", "--dataset", out, "--output", c["tmp"] + "/st1", "--plots", "none"],
                 ["stats", "--dataset", root, "--output", c["tmp"] + "/st2", "--plots", "none"]):
        proc = sarchat(c, args)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_dataset_manifest_with_a_lone_surrogate_is_one_line(case):
    c = case
    path = os.path.join(c["gen"], "manifest.json")
    doc = json.load(open(path))
    doc["note"] = "\ud800"
    with open(path, "w") as f:
        json.dump(doc, f)
    before = tree_hashes(c["tmp"])
    check_error_line(sarchat(c, score_args(c, c["tmp"] + "/scores")), "score", 1, ["manifest.json", "surrogate"])
    check_error_line(sarchat(c, stats_args(c, c["tmp"] + "/st")), "stats", 1, ["manifest.json", "surrogate"])
    assert tree_hashes(c["tmp"]) == before


# ---------------------------------------------------------------------------------------------
# 6. Anything a backend returns is stored (escaped) or recorded as that sample's error


class Endpoint:
    """An OpenAI-compatible endpoint on 127.0.0.1 whose replies are raw bodies from `replies`
    (cycled): whatever a broken or hostile server may send."""

    def __init__(self, replies):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        bodies = list(replies)
        state = {"n": 0}
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, data):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(json.dumps({"object": "list", "data": [{"id": "served", "object": "model"}]}).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if isinstance(body["messages"][-1]["content"], str):  # the start-up check
                    return self._send(b'{"choices": [{"message": {"content": "OK"}}]}')
                with lock:
                    data = bodies[state["n"] % len(bodies)]
                    state["n"] += 1
                self._send(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _reply(content_json):
    return b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": ' + content_json + b"}}]}"


REPLIES = [
    _reply(b'"a lone \\ud800 surrogate {<1><2><3><4>}"'),
    _reply(b'"[\\udfff]"'),
    b'{"choices": [{"message": {"content": ' + b"[" * 100000 + b"]" * 100000 + b"}}]}",
    _reply(b'{"text": 5}'),
    _reply(b'"fine {<1><2><3><4>}"'),
]


def test_whatever_an_endpoint_returns_is_stored_or_that_samples_error(case):
    import pyarrow.parquet as pq

    c = case
    env = dict(c["env"], SARCHAT_TEST_KEY="k")
    out = c["tmp"] + "/run"
    with Endpoint(REPLIES) as ep:
        args = ["infer", "--dataset", c["gen"], "--backend", "openai", "--model", "served", "--adapter", "qwen2-vl",
                "--base-url", ep.url, "--api-key-env", "SARCHAT_TEST_KEY", "--output", out, "--no-progress",
                "--image-root", c["data"], "--max-retries", "0", "--concurrency", "2"]
        first = run_sarchat(args, cwd=c["tmp"], env=env)
        again = run_sarchat(args, cwd=c["tmp"], env=env)
    for proc in (first, again):
        assert proc.returncode in (0, 1), proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
    rows = pq.read_table(os.path.join(out, "predictions.parquet")).to_pylist()
    assert rows and all(r["prediction"] is not None or r["error"] for r in rows)
    assert any(r["prediction"] and "\\ud800" in r["prediction"] for r in rows)  # stored, escaped


# ---------------------------------------------------------------------------------------------
# 7. Every OS error on an output is one line naming the path and the cause


# The capabilities that let root read and write past a file's permissions (the tests run as root)
ROOTS_OVERRIDE = ("dac_override", "dac_read_search")


READ_ONLY = [  # (command line with {ro} the read-only folder's output path, command)
    (lambda c, ro: ["synth", "--output", ro, "--images", "12"], "synth"),
    (lambda c, ro: gen_args(c, ro), "generate"),
    (lambda c, ro: ["regenerate", "--input", c["data"], "--output-base", ro, "--formats", "parquet"], "regenerate"),
    (lambda c, ro: stats_args(c, ro), "stats"),
    (lambda c, ro: score_args(c, ro), "score"),
    (lambda c, ro: ["infer", "--dataset", c["gen"], "--backend", "oracle", "--image-root", c["data"], "--output", ro,
                    "--no-progress"], "infer"),
    (lambda c, ro: ["export", "lmms-eval", "--dataset", c["gen"], "--output", ro], "export"),
]


@pytest.mark.parametrize("row", READ_ONLY, ids=[r[1] for r in READ_ONLY])
@pytest.mark.parametrize("where", ["the folder", "its parent"])
def test_a_read_only_output_is_one_line(case, row, where):
    make, command = row
    c = case
    ro = os.path.join(c["tmp"], "ro")
    os.makedirs(ro)
    out = ro if where == "the folder" else os.path.join(ro, "out")
    before = tree_hashes(c["tmp"])
    os.chmod(ro, 0o555)
    try:
        proc = cli_process.run_sarchat(make(c, out), cwd=c["tmp"], env=c["env"], drop_capabilities=ROOTS_OVERRIDE)
    finally:
        os.chmod(ro, 0o755)
    check_error_line(proc, command, 1, [ro, "ermission denied"])
    assert tree_hashes(c["tmp"]) == before


def test_infer_on_a_full_disk_names_the_file_and_resumes(case):
    c = case
    out = c["tmp"] + "/run"
    args = ["infer", "--dataset", c["gen"], "--backend", "oracle", "--image-root", c["data"], "--output", out,
            "--no-progress"]
    full = sarchat(c, args, file_size_limit=2048)
    check_error_line(full, "infer", 1, [out, "disk full"])
    again = sarchat(c, args)
    assert again.returncode == 0, again.stderr
    assert os.path.exists(os.path.join(out, "predictions.parquet"))


# ---------------------------------------------------------------------------------------------
# 8. After SIGKILL or a full disk, rerunning the same command completes


def test_export_recognises_its_own_half_written_folder(case):
    c = case
    out = c["tmp"] + "/tasks"
    args = ["export", "lmms-eval", "--dataset", c["gen"], "--output", out]
    full = sarchat(c, args, file_size_limit=1500)
    check_error_line(full, "export", 1, ["disk full or file size limit"])
    assert os.listdir(out) and not os.path.exists(os.path.join(out, "sarchat_export.json"))
    again = sarchat(c, args)
    assert again.returncode == 0, again.stderr
    clean = c["tmp"] + "/clean"
    assert sarchat(c, ["export", "lmms-eval", "--dataset", c["gen"], "--output", clean]).returncode == 0
    assert sorted(os.listdir(out)) == sorted(os.listdir(clean))


@pytest.mark.parametrize("command", ["generate", "score", "stats", "export"])
def test_sigkill_after_claiming_then_the_same_command_completes(case, command):
    import signal

    c = case
    out = c["tmp"] + "/out"
    args = {"generate": gen_args(c, out), "score": score_args(c, out), "stats": stats_args(c, out),
            "export": ["export", "lmms-eval", "--dataset", c["gen"], "--output", out]}[command]
    paused = Paused(args, f"{command}-claimed", c["tmp"], c["env"])
    assert paused.reached
    paused.proc.send_signal(signal.SIGKILL)
    paused.resume()
    assert os.path.exists(os.path.join(out, ".sarchat-lock"))  # left by the killed run
    again = sarchat(c, args)
    assert again.returncode == 0, again.stderr
    assert not os.path.exists(os.path.join(out, ".sarchat-lock"))


# ---------------------------------------------------------------------------------------------
# 9. One image-path rule


def test_an_image_replaced_by_a_symlink_out_of_the_root_is_never_read(case):
    """A test image turned into a symlink to a file outside the image root after generation: infer
    records that sample's error (the file is not read nor sent), the others are answered."""
    import pyarrow.parquet as pq

    c = case
    root = c["tmp"] + "/images"
    shutil.copytree(c["data"], root)
    secret = _write(c, "secret.png", b"not for the endpoint")
    rows = [r for p in sorted(os.listdir(os.path.join(c["gen"], "parquet", "test")))
            for r in pq.read_table(os.path.join(c["gen"], "parquet", "test", p)).to_pylist()]
    victim = rows[0]["image_path"]
    os.remove(os.path.join(root, victim))
    os.symlink(secret, os.path.join(root, victim))
    out = c["tmp"] + "/run"
    proc = sarchat(c, ["infer", "--dataset", c["gen"], "--backend", "cfar", "--image-root", root, "--output", out,
                       "--no-progress"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    preds = pq.read_table(os.path.join(out, "predictions.parquet")).to_pylist()
    bad = [p for p in preds if p["error"]]
    assert bad and all("outside the image root" in p["error"] for p in bad)
    assert {p["id"] for p in bad} == {r["id"] for r in rows if r["image_path"] == victim}


# ---------------------------------------------------------------------------------------------
# 10. Every numeric flag is checked when parsed; Ctrl-C is one line


SCORE_FLAGS = ["--dataset", "{gen}", "--predictions", "{preds}", "--output", "{tmp}/s"]
NUMERIC = [
    ("score", SCORE_FLAGS, "--seed", "-5"),
    ("score", SCORE_FLAGS, "--bootstrap", "-1"),
    ("score", SCORE_FLAGS, "--num-buckets", "0"),
    ("score", SCORE_FLAGS, "--samples", "-2"),
    ("score", SCORE_FLAGS, "--seed", "x"),
    ("synth", ["--output", "{tmp}/d"], "--test-fraction", "1.5"),
    ("synth", ["--output", "{tmp}/d"], "--test-fraction", "nan"),
]


@pytest.mark.parametrize("row", NUMERIC, ids=[f"{r[0]} {r[2]} {r[3]}" for r in NUMERIC])
def test_a_numeric_flag_out_of_range_is_a_usage_error(case, row):
    command, argv, flag, value = row
    c = case
    before = tree_hashes(c["tmp"])
    proc = sarchat(c, [command] + [a.format(**c) for a in argv] + [flag, value])
    check_error_line(proc, command, 2, [flag, repr(value)])
    assert tree_hashes(c["tmp"]) == before


def test_every_numeric_flag_has_a_checking_type():
    """No subcommand parses a number with bare int/float (which takes -5, nan, inf): the types of
    beam_pipelines/flags.py or inference/config.py check the range, so a flag added later holds too."""
    import importlib

    from sarchat.beam_pipelines.cli import SUBCOMMANDS

    bare = []
    for name, (module, _) in SUBCOMMANDS.items():
        mod = importlib.import_module(module)
        builders = [getattr(mod, n) for n in ("build_parser", "explain_parser") if hasattr(mod, n)]
        for build in builders:
            for action in build()._actions:
                if action.type in (int, float):
                    bare.append(f"{name} {action.option_strings}")
    assert bare == []


@pytest.mark.parametrize("command", ["generate", "score", "stats", "infer", "export"])
def test_ctrl_c_is_one_line_and_releases_the_folder(case, command):
    import signal

    c = case
    out = c["tmp"] + "/out"
    args = {"generate": gen_args(c, out), "score": score_args(c, out), "stats": stats_args(c, out),
            "infer": ["infer", "--dataset", c["gen"], "--backend", "oracle", "--image-root", c["data"], "--output",
                      out, "--no-progress"],
            "export": ["export", "lmms-eval", "--dataset", c["gen"], "--output", out]}[command]
    before = tree_hashes(c["tmp"])
    paused = Paused(args, f"{command}-claimed", c["tmp"], c["env"])
    assert paused.reached
    paused.proc.send_signal(signal.SIGINT)
    done = paused.resume(timeout=60)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == f"sarchat {command}: interrupted", done.stderr
    assert tree_hashes(c["tmp"]) == before  # nothing claimed stays: no lock, no marker, no folder


def test_ctrl_c_in_the_middle_of_a_pipeline_ends_it(case):
    """Stopped inside a Beam step (a worker thread reading predictions), Ctrl-C ends the command:
    one line, exit 130, and the new output folder is gone again."""
    import signal

    c = case
    before = tree_hashes(c["tmp"])
    paused = Paused(score_args(c, c["tmp"] + "/scores"), "score-reading-predictions", c["tmp"], c["env"])
    assert paused.reached
    paused.proc.send_signal(signal.SIGINT)
    out, err = paused.proc.communicate(timeout=60)  # the step stays stopped: only Ctrl-C can end the run
    os.close(paused.go)
    assert paused.proc.returncode == 130, err
    assert err.strip() == "sarchat score: interrupted", err
    assert "Traceback" not in err, err
    assert tree_hashes(c["tmp"]) == before
