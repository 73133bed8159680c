"""CI's static checks of the library: ruff, pyright and mypy, against a baseline that only shrinks.

    python .ci/static_checks.py            # exit 1 on any new finding, 0 otherwise
    python .ci/static_checks.py --update   # rewrite .ci/static_baseline.json from today's findings

Every `sarchat.*` import must resolve for pyright and mypy (no baseline for that). Other findings
are counted per file and rule; a count above the committed baseline fails, one below it is
reported so the baseline can be lowered in the same commit as the fix. ruff must be clean.
Checked: everything the wheel installs (the modules reached through sarchat/).
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASELINE = os.path.join(REPO, ".ci", "static_baseline.json")
BIN = os.path.dirname(sys.executable)


def library_files():
    """The library's modules as paths through sarchat/ (the links), so pyright sees one file once."""
    out = []
    for folder, _, files in os.walk(os.path.join(REPO, "sarchat"), followlinks=True):
        out += [os.path.relpath(os.path.join(folder, f), REPO) for f in files
                if f.endswith(".py")]
    return sorted(out)


def tool(name):
    return os.path.join(BIN, name) if os.path.exists(os.path.join(BIN, name)) else name


def run_ruff():
    proc = subprocess.run([tool("ruff"), "check", "sarchat/", "beam_pipelines", "transforms", "templates", "inference",
                           "report", "synthetic", "tests", "benchmarks", ".ci"], cwd=REPO, capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def run_pyright(files):
    proc = subprocess.run([tool("pyright"), "--outputjson", *files], cwd=REPO, capture_output=True, text=True)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        sys.exit(f"static_checks: pyright gave no report:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    unresolved, counts = [], collections.Counter()
    for d in report["generalDiagnostics"]:
        if d["severity"] != "error":
            continue
        path = os.path.relpath(d["file"], REPO)
        line = d["range"]["start"]["line"] + 1
        if re.match(r'Import "sarchat[."]', d["message"]) or 'sarchat' in d["message"] and d.get("rule") == "reportMissingImports":
            unresolved.append(f"{path}:{line}: {d['message']}")
        counts[f"{path}::{d.get('rule', 'error')}"] += 1
    return unresolved, counts


def run_mypy():
    # The cache lives outside the checkout, so a clean clone reuses what an earlier run learnt about the
    # third-party packages (about 23 s cold, 1 s warm); mypy checks every cached module against its source.
    cache = os.environ.get("SARCHAT_MYPY_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sarchat", "mypy")
    proc = subprocess.run([tool("mypy"), "-p", "sarchat", "--no-error-summary", "--hide-error-context",
                           "--cache-dir", cache], cwd=REPO, capture_output=True, text=True)
    unresolved, counts = [], collections.Counter()
    for line in proc.stdout.splitlines():
        m = re.match(r"(.+?):(\d+): error: (.*?)(?:  \[([a-z-]+)\])?$", line)
        if not m:
            continue
        path, _, message, code = m.groups()
        if code in ("import-not-found", "import-untyped", "import") and "sarchat" in message:
            unresolved.append(line)
        counts[f"{path}::{code or 'error'}"] += 1
    if proc.returncode not in (0, 1):
        sys.exit(f"static_checks: mypy failed to run:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return unresolved, counts


def compare(name, counts, baseline):
    grown = [f"  {k}: {n} (baseline {baseline.get(k, 0)})" for k, n in sorted(counts.items()) if n > baseline.get(k, 0)]
    shrunk = sum(max(0, n - counts.get(k, 0)) for k, n in baseline.items())
    total = sum(counts.values())
    print(f"static_checks: {name}: {total} findings (baseline {sum(baseline.values())})")
    if shrunk:
        print(f"static_checks: {name}: {shrunk} fewer than the baseline; lower it: python .ci/static_checks.py --update")
    if grown:
        print(f"static_checks: {name}: new findings beyond the baseline:\n" + "\n".join(grown))
    return not grown


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="write today's counts as the baseline")
    args = parser.parse_args(argv)
    ok = True
    rc, text = run_ruff()
    print(f"static_checks: ruff: {'clean' if rc == 0 else 'findings'}")
    if rc != 0:
        print(text)
        ok = False
    files = library_files()
    py_unresolved, py_counts = run_pyright(files)
    my_unresolved, my_counts = run_mypy()
    for name, unresolved in (("pyright", py_unresolved), ("mypy", my_unresolved)):
        print(f"static_checks: {name}: {len(unresolved)} unresolved sarchat imports in {len(files)} modules")
        if unresolved:
            print("\n".join(unresolved))
            ok = False
    if args.update:
        with open(BASELINE, "w", encoding="utf-8") as f:
            json.dump({"pyright": dict(sorted(py_counts.items())), "mypy": dict(sorted(my_counts.items()))}, f, indent=1)
            f.write("\n")
        print(f"static_checks: wrote {os.path.relpath(BASELINE, REPO)}")
        return 0 if ok else 1
    with open(BASELINE, encoding="utf-8") as f:
        baseline = json.load(f)
    ok &= compare("pyright", py_counts, baseline["pyright"])
    ok &= compare("mypy", my_counts, baseline["mypy"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
