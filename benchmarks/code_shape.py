"""The shape of the library in figures: code lines per folder and radon's complexity grades.

    python benchmarks/code_shape.py [--ref GIT_REF]

Code lines are lines that are not blank, a comment or a docstring (radon's `sloc`), over every
module the wheel installs (sarchat/ and the folders it links to). Grades are radon's cyclomatic
complexity ranks per function and method (A best .. F worst). The reports' Jinja2 templates
(`*.j2`, installed beside the modules) are counted on their own line, as non-blank lines: they are
words, not Python code, and stay out of the code lines total. With --ref, the figures of that
commit (read with `git show`, nothing checked out) are printed beside this tree's.
Needs radon (`pip install radon`); it is a measuring tool, not a dependency.
"""
import argparse
import collections
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("beam_pipelines", "transforms", "templates", "inference", "report", "synthetic")
SUFFIXES = (".py", ".j2")

try:
    from radon.complexity import cc_rank, cc_visit
    from radon.raw import analyze
except ImportError:
    sys.exit("code_shape: radon is not installed (pip install radon)")


def sources(ref=None):
    """{path: text} of the installed modules and templates, from the work tree or from commit `ref`."""
    if ref is None:
        out = {}
        for part in PARTS:
            for folder, _, files in os.walk(os.path.join(REPO, part)):
                for name in files:
                    if name.endswith(SUFFIXES):
                        path = os.path.join(folder, name)
                        out[os.path.relpath(path, REPO)] = open(path, encoding="utf-8").read()
        return out
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", ref, "--", *PARTS], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    return {n: subprocess.run(["git", "show", f"{ref}:{n}"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout for n in names if n.endswith(SUFFIXES)}


TEMPLATE_LINES = "template lines (Jinja2)"


def shape(texts):
    lines, grades, worst = collections.Counter(), collections.Counter(), []
    for path, text in texts.items():
        if path.endswith(".j2"):
            lines[TEMPLATE_LINES] += sum(1 for line in text.splitlines() if line.strip())
            continue
        folder = os.path.dirname(path)
        lines[folder] += analyze(text).sloc
        for block in cc_visit(text):
            rank = cc_rank(block.complexity)
            grades[rank] += 1
            if rank in "DEF":
                worst.append((block.complexity, rank, f"{path}:{block.lineno} {block.fullname}"))
    return lines, grades, sorted(worst, reverse=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", help="also measure this commit (e.g. a tag or main~10)")
    args = parser.parse_args(argv)
    columns = [("this tree", shape(sources()))]
    if args.ref:
        columns.insert(0, (args.ref, shape(sources(args.ref))))
    folders = sorted(set().union(*(c[1][0] for c in columns)) - {TEMPLATE_LINES})
    print(f"{'folder':<28}" + "".join(f"{name:>14}" for name, _ in columns))
    for folder in folders:
        print(f"{folder:<28}" + "".join(f"{c[1][0][folder]:>14,}" for c in columns))
    print(f"{'code lines, total':<28}" + "".join(f"{sum(c[1][0].values()) - c[1][0][TEMPLATE_LINES]:>14,}"
                                                  for c in columns))
    print(f"{TEMPLATE_LINES:<28}" + "".join(f"{c[1][0][TEMPLATE_LINES]:>14,}" for c in columns))
    for rank in "ABCDEF":
        print(f"{'functions graded ' + rank:<28}" + "".join(f"{c[1][1][rank]:>14,}" for c in columns))
    for name, (_, _, worst) in columns:
        print(f"\n{name}: functions graded D or worse")
        for complexity, rank, where in worst:
            print(f"  {rank} {complexity:>3}  {where}")


if __name__ == "__main__":
    main()
