"""The Jinja2 environment the text reports render through (the dataset card, stats.md, report.md,
report.html and its sections).

A report is a typed model of the values it shows, computed by plain functions, and one template file
shipped beside its module (`<name>.md.j2`, `<name>.html.j2`) that holds the words. The environment
drops the line of a block tag (`trim_blocks`, `lstrip_blocks`), keeps a template's last newline, and
fails on a name the model lacks instead of printing nothing. Markdown is written as is; a
`*.html.j2` template escapes every value it prints (autoescape) unless the model marks it safe
(`|safe`: the charts' SVG, a section's own HTML), with the standard library's `html.escape`, whose
entities (`&#x27;`, `&quot;`) are the ones the reports have always written (markupsafe's would be
`&#39;`, `&#34;`).
"""
import functools
import html
import json
import os

import jinja2
import markupsafe


@jinja2.pass_eval_context
def _escaped(eval_ctx, value):
    if not eval_ctx.autoescape or isinstance(value, markupsafe.Markup):
        return value
    return markupsafe.Markup(html.escape(str(value)))


@functools.lru_cache(maxsize=None)
def _environment(folder: str) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), trim_blocks=True, lstrip_blocks=True,
                             autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                                                 default_for_string=False, default=False),
                             finalize=_escaped, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["json"] = json.dumps  # a JSON string is also a valid YAML scalar; keys keep their order
    return env


def render(module_file: str, name: str, **model) -> str:
    """Template `name`, from the folder of `module_file` (pass __file__), filled with `model`."""
    return _environment(os.path.dirname(os.path.abspath(module_file))).get_template(name).render(**model)
