"""The Jinja2 environment the Markdown reports render through (the dataset card, stats.md).

A report is a typed model of the values it shows, computed by plain functions, and one template file
shipped beside its module (`<name>.md.j2`) that holds the words. The environment writes text, not
HTML (no autoescape), drops the line of a block tag (`trim_blocks`, `lstrip_blocks`), keeps a
template's last newline, and fails on a name the model lacks instead of printing nothing.
"""
import functools
import json
import os

import jinja2


@functools.lru_cache(maxsize=None)
def _environment(folder: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=False, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["json"] = json.dumps  # a JSON string is also a valid YAML scalar; keys keep their order
    return env


def render(module_file: str, name: str, **model) -> str:
    """Template `name`, from the folder of `module_file` (pass __file__), filled with `model`."""
    return _environment(os.path.dirname(os.path.abspath(module_file))).get_template(name).render(**model)
