"""SARChat-Bench toolkit: SAR dialogue generation, VLM inference and scoring.

One import name, `sarchat`, over the repository's top-level folders: `sarchat/transforms` is a
relative symbolic link to `transforms/`, and so on for each part, so `sarchat.transforms.geometry`
is `transforms/geometry.py` to Python, pyright, mypy and an editor alike. A wheel or an sdist holds
real files under `sarchat/` (docs/architecture.md, "One import name").
"""

__version__ = "0.2.0"
