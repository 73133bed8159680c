"""Which box format each model's answers are read in. Pure code, no Beam.

Precedence: an explicit `--adapter MODEL=NAME`, then an explicit `--adapter NAME` for all models,
then the `box_format` recorded in the manifest.json that `sarchat infer` writes beside its
predictions, then canonical. A NAME is a box format spec (canonical, qwen2-vl, internvl,
json-bbox2d[:scale], ... : sarchat.transforms.box_formats) or a model adapter of sarchat.transforms.adapters ('qwen2.5-vl',
'qwen2-vl:canonical', ...), whose declared `box_format` is used. The scale is always declared,
never guessed from the values.
"""
from sarchat.transforms import adapters
from sarchat.transforms.box_formats import BOX_FORMAT_NAMES, get_box_format
from sarchat.transforms.errors import UsageError

_SCALED_FORMATS = ("json-bbox2d", "xyxy", "yxyx")


def _is_builtin_spec(name):
    head, sep, _ = name.partition(":")
    return head in _SCALED_FORMATS or (head in BOX_FORMAT_NAMES and not sep)


def resolve_box_format(name):
    """A BoxFormat for an --adapter value; ValueError naming the known formats for an unknown name."""
    name = (name or "").strip()
    if _is_builtin_spec(name):
        return get_box_format(name)
    try:
        return adapters.get_adapter(name).box_format
    except ValueError as e:
        raise ValueError(f"unknown adapter or box format {name!r}: {e}") from None


class FormatChooser:
    """The box format of each model's answers (precedence in the module docstring)."""

    def __init__(self, default=None, per_model=None, discovered=None):
        self.default = resolve_box_format(default) if default else None
        self.per_model = {m: resolve_box_format(a) for m, a in (per_model or {}).items()}
        self.discovered = {m: resolve_box_format(a) for m, a in (discovered or {}).items()}
        self.canonical = get_box_format("canonical")

    def for_model(self, model):
        return self.per_model.get(model) or self.default or self.discovered.get(model, self.canonical)

    @classmethod
    def from_flags(cls, values, discovered=None):
        """From the --adapter values; UsageError naming the flag for an unknown name."""
        default, per_model = None, {}
        for v in values or []:
            if "=" in v:
                m, _, a = v.partition("=")
                per_model[m.strip()] = a.strip()
            else:
                default = v
        try:
            return cls(default, per_model, discovered)
        except ValueError as e:
            raise UsageError(f"--adapter: {e}") from None


def discover_run_formats(run_manifests):
    """{model: box format spec} from the run manifests `sarchat infer` writes beside its predictions
    (keys 'model' and 'box_format'); manifests without them, or with an unknown format, are ignored."""
    found = {}
    for m in run_manifests:
        if isinstance(m, dict) and isinstance(m.get("model"), str) and isinstance(m.get("box_format"), str):
            try:
                get_box_format(m["box_format"])
            except ValueError:
                continue
            found[m["model"]] = m["box_format"]
    return found
