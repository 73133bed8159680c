"""The docs tell the truth (issue 22, point 8): they cite only files that are in the repository and
sections of docs/rules.md that exist (never the spec outside the repository), and every CPU-runnable
`sarchat` command they show runs as written, on a small synthetic dataset."""
import glob
import os
import re
import shlex
import subprocess

import pytest

from tests import cli_process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "inference/README.md", "benchmarks/README.md"] + sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
TOP = ("beam_pipelines", "transforms", "inference", "report", "synthetic", "templates", "tests", "docs", "benchmarks", ".ci")


def _tracked():
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [p for p in out.stdout.splitlines() if p]


def _texts():
    for rel in _tracked():
        if rel.endswith((".py", ".md", ".json", ".sh", ".j2")) and rel != "tests/test_docs.py":
            with open(os.path.join(REPO, rel), encoding="utf-8", errors="replace") as fh:
                yield rel, fh.read()


def test_docs_and_comments_cite_files_of_the_repository():
    tracked = set(_tracked())
    path = re.compile(r"(?<![\w/.-])((?:%s)/[\w./-]+\.(?:py|md|json|sh)(?:\.j2)?)\b" % "|".join(re.escape(t) for t in TOP))
    missing = []
    for rel, text in _texts():
        for m in path.finditer(text):
            cited = m.group(1)
            if cited not in tracked and not os.path.exists(os.path.join(REPO, cited)):
                missing.append(f"{rel}: {cited}")
    assert not missing, missing


def test_no_citation_of_the_spec_outside_the_repository_and_rules_sections_exist():
    with open(os.path.join(REPO, "docs", "rules.md"), encoding="utf-8") as fh:
        sections = {int(n) for n in re.findall(r"^## (\d+)\. ", fh.read(), re.M)}
    bad = []
    for rel, text in _texts():
        if re.search(r"\bSPEC(?:\.md)?\s*(?:section|§)|\bthe SPEC\b", text):
            bad.append(f"{rel}: cites SPEC")
        for m in re.finditer(r"docs/rules\.md,? (?:sections? |§)(\d+)(?:(?:,| and) (\d+))?", text):
            for n in filter(None, m.groups()):
                if int(n) not in sections:
                    bad.append(f"{rel}: docs/rules.md section {n}")
    assert not bad, bad


# ---- every CPU-runnable command shown runs as written --------------------------------------------

PLACEHOLDERS = {"ROOT": "data", "OUT": "out", "GEN": "out", "GENERATED_OUT": "out", "DIR": "stats",
                "SCORES": "scores", "RUN_DIR": "runs/cfar", "STATS_DIR": "stats"}
NOT_ON_A_CPU = ("--backend vllm", "--backend openai", "gs://", "...", "$", "--runner", "*", "--spawn-shards",
                "--explain ID")
ORDER = ("synth", "generate", "regenerate", "stats", "infer", "export", "score", "demo")


def doc_commands():
    """(doc, command) of each `sarchat` line in the docs' shell blocks: continuation lines joined,
    optional [..] parts and comments dropped, A|B alternatives as A, placeholders as the files the test
    makes; the ones that need a GPU, a server or the cloud left out."""
    found = []
    for rel in DOCS:
        with open(os.path.join(REPO, rel), encoding="utf-8") as fh:
            text = fh.read()
        for lang, block in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            if lang not in ("", "bash", "sh", "console"):
                continue  # a JSON or Python block: fences of every language pair up, so none is skipped
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                while re.search(r"\[[^\[\]]*\]", line):
                    line = re.sub(r"\s*\[[^\[\]]*\]", "", line)
                if not line.startswith("sarchat ") or any(s in line for s in NOT_ON_A_CPU):
                    continue
                words = [w.split("|")[0] for w in shlex.split(line)]
                words = [PLACEHOLDERS.get(w, w) for w in words]
                found.append((rel, words))
    return sorted(found, key=lambda rc: ORDER.index(rc[1][1]) if rc[1][1] in ORDER else len(ORDER))


def test_the_docs_show_cpu_commands():
    commands = [" ".join(words[:2]) for _, words in doc_commands()]
    for expected in ("sarchat generate", "sarchat stats", "sarchat infer", "sarchat export", "sarchat score"):
        assert expected in commands, commands


def test_every_cpu_command_in_the_docs_runs_as_written(tmp_path):
    env = dict(cli_process.repo_env(), SARCHAT_NO_PROGRESS="1")
    done = cli_process.run_sarchat(["synth", "--output", "data", "--images", "12", "--seed", "3"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    ran = []
    for doc, words in doc_commands():
        if words[1] == "demo":
            words = words + ["--images", "10", "--tiny"]  # the same command, at test size
        # a command that reads the output of one the docs show for a GPU model (runs/qwen2-vl) is left out
        if any(w.startswith("runs/") and not os.path.exists(tmp_path / w) and words[1] != "infer" for w in words):
            continue
        done = cli_process.run_sarchat(words[1:], cwd=tmp_path, env=env)
        assert done.returncode == 0, f"{doc}: {' '.join(words)}\n{done.stderr[-2000:]}"
        ran.append(" ".join(words))
    assert len(ran) >= 6, ran
