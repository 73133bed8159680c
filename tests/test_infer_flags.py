"""`sarchat infer`'s flags are checked when parsed: a bad value is one line naming the flag, exit 2,
and nothing is written."""
import os
import subprocess
import sys

import pytest

from sarchat.beam_pipelines import cli
from sarchat.inference.run import parse_config
from tests.fixture_dataset import write_fixture_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    generated, _, _ = write_fixture_dataset(str(tmp_path_factory.mktemp("flags")), n_images=1, seed=2)
    return generated


BAD = [  # (flags, what the error line says)
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got '0'"),
    (["--batch-size", "-3"], "argument --batch-size: expected a positive integer, got '-3'"),
    (["--batch-size", "many"], "argument --batch-size: expected a positive integer, got 'many'"),
    (["--limit", "0"], "argument --limit: expected a positive integer"),
    (["--io-workers", "0"], "argument --io-workers: expected a positive integer"),
    (["--concurrency", "0"], "argument --concurrency: expected a positive integer"),
    (["--push-interval", "-1"], "argument --push-interval: expected a non-negative number"),
    (["--request-timeout", "0"], "argument --request-timeout: expected a positive number"),
    (["--request-timeout", "nan"], "argument --request-timeout: expected a positive number"),
    (["--retry-base", "0"], "argument --retry-base: expected a positive number"),
    (["--retry-max-wait", "-1"], "argument --retry-max-wait: expected a positive number"),
    (["--max-retries", "-1"], "argument --max-retries: expected a non-negative integer"),
    (["--seed", "-1"], "argument --seed: expected a non-negative integer"),
    (["--max-tokens", "0"], "argument --max-tokens: expected a positive integer"),
    (["--top-p", "0"], "argument --top-p: expected a number in (0, 1]"),
    (["--temperature", "-0.5"], "argument --temperature: expected a non-negative number"),
    (["--num-shards", "0"], "argument --num-shards: expected a positive integer"),
    (["--max-image-pixels", "0"], "argument --max-image-pixels: expected a positive integer"),
    (["--tasks", "count", "countt"], "argument --tasks: unknown task 'countt'"),
    (["--tasks", "classify_multi"], "argument --tasks: 'classify_multi' selects nothing: classify has no subsets"),
    (["--tasks", "refer_double"], "argument --tasks: 'refer_double' selects nothing: refer has the subsets single, multi"),
    (["--backend", "vlm"], "argument --backend: unknown backend 'vlm'; known: vllm, openai, cfar, oracle, blind"),
    (["--backend", "no_such_pkg.mod:Backend"], "argument --backend: no_such_pkg.mod:Backend: cannot import no_such_pkg.mod"),
    (["--backend", "sarchat.inference.run:NoSuch"], "argument --backend: sarchat.inference.run:NoSuch: "
                                                    "sarchat.inference.run has no NoSuch"),
    (["--adapter", "qwen9"], "argument --adapter: unknown adapter 'qwen9'; known: qwen2-vl"),
    (["--adapter", "qwen2-vl:bogus"], "argument --adapter: adapter 'qwen2-vl:bogus': unknown box format 'bogus'"),
    (["--chat-template", "/no/such/template.jinja"], "argument --chat-template: cannot read the chat template "
                                                     "/no/such/template.jinja (No such file or directory)"),
    (["--engine-arg", "enforce_eager"], "argument --engine-arg: --engine-arg wants KEY=VALUE, got 'enforce_eager'"),
]


@pytest.mark.parametrize("flags,message", BAD, ids=[" ".join(f) for f, _ in BAD])
def test_bad_flag_values_are_one_line_exit_2(dataset, tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    argv = ["--dataset", dataset, "--backend", "cfar", "--output", str(out), "--no-progress", *flags]
    if "--backend" in flags:
        argv[argv.index("cfar") - 1:argv.index("cfar") + 1] = []
    assert cli.main(["infer", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sarchat infer: error: " + message), err
    assert err.count("\n") == 1
    assert not out.exists()


def test_flag_combinations_are_usage_errors(dataset, tmp_path, capsys):
    out = str(tmp_path / "out")
    cases = [
        (["--backend", "cfar", "--num-shards", "2", "--shard-index", "2"], "--shard-index 2 must be in 0..1 (--num-shards 2)"),
        (["--backend", "vllm"], "--model is required for the vllm backend"),
        (["--backend", "openai", "--model", "m", "--engine-arg", "max_num_seqs=4"],
         "--engine-arg max_num_seqs: vLLM engine arguments apply to --backend vllm"),
        (["--backend", "openai", "--model", "m", "--base-url", "ftp://h/v1"], "--base-url ftp://h/v1: expected http(s)"),
    ]
    for flags, message in cases:
        assert cli.main(["infer", "--dataset", dataset, "--output", out, "--no-progress", *flags]) == 2, flags
        err = capsys.readouterr().err
        assert err.startswith(f"sarchat infer: error: {message}") and err.count("\n") == 1, err
    assert not os.path.exists(out)


def test_values_at_the_edges_are_accepted(dataset, tmp_path):
    cfg = parse_config(["--dataset", dataset, "--output", str(tmp_path), "--backend", "openai", "--model", "m",
                        "--max-retries", "0", "--push-interval", "0", "--seed", "0", "--top-p", "1",
                        "--tasks", "count,refer_single", "grounding"])
    assert (cfg.max_retries, cfg.push_interval, cfg.seed, cfg.top_p) == (0, 0.0, 0, 1.0)
    assert cfg.tasks == ("count,refer_single", "grounding")
    with pytest.raises(AttributeError):  # frozen: built once, never changed afterwards
        cfg.seed = 3


def test_the_cli_prints_one_line_and_exits_2(dataset, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run([sys.executable, "-m", "sarchat.beam_pipelines.cli", "infer", "--dataset", dataset,
                           "--output", str(tmp_path / "out"), "--backend", "cfar", "--concurrency", "0"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr == "sarchat infer: error: argument --concurrency: expected a positive integer, got '0'\n"
    assert not (tmp_path / "out").exists()
