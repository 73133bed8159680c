"""SARChat-Bench toolkit: SAR dialogue generation, VLM inference and scoring.

One import name, `sarchat`, over the repository's top-level folders: `sarchat.transforms` is
`transforms/`, `sarchat.inference` is `inference/`, and so on (setup.py maps them with
`package_dir`). Installed from a wheel, the sub-packages sit inside this folder; in the source tree
they sit beside it, and the line below lets `sarchat.<folder>` find them there too, so the tree
works with an editable install, with PYTHONPATH=<repo>, and from a Beam or subprocess worker alike.
"""
import os as _os

__version__ = "0.2.0"

_REPO = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if not _os.path.isdir(_os.path.join(_os.path.dirname(__file__), "transforms")) \
        and _os.path.isfile(_os.path.join(_REPO, "transforms", "__init__.py")):
    __path__.append(_REPO)  # noqa: F821 (the package's own __path__)
