"""Box formats a model may answer in (docs/rules.md sections 11 and 12). Pure functions, no Beam.

A format's scale is declared by the model adapter, never guessed from the values:
  canonical        {<x1><y1><x2><y2>}                        pixels
  qwen2-vl         <|box_start|>(x1,y1),(x2,y2)<|box_end|>    0..1000
  internvl         <box>[[x1, y1, x2, y2]]</box>              0..1000 (several boxes: [[..],[..]])
  json-bbox2d[:S]  {"bbox_2d": [x1, y1, x2, y2], ...}         S = 'pixels' (default) or a number such as 1000
All regexes use bounded, non-nested quantifiers so they run in linear time on any input.
"""
import re
from dataclasses import dataclass

_NUM = r"(-?\d{1,7}(?:\.\d{1,8})?)"
_SEP = r"\s{0,8},\s{0,8}"

_CANONICAL = re.compile(r"\{<%s><%s><%s><%s>\}" % (_NUM, _NUM, _NUM, _NUM))
_QWEN2 = re.compile(
    r"<\|box_start\|>\s{0,8}\(\s{0,8}%s%s%s\s{0,8}\)%s\(\s{0,8}%s%s%s\s{0,8}\)\s{0,8}<\|box_end\|>"
    % (_NUM, _SEP, _NUM, _SEP, _NUM, _SEP, _NUM)
)
_INTERNVL_BLOCK = re.compile(r"<box>([^<]{0,4000})</box>")
_QUAD = re.compile(r"\[\s{0,8}%s%s%s%s%s%s%s\s{0,8}\]" % (_NUM, _SEP, _NUM, _SEP, _NUM, _SEP, _NUM))
_BBOX2D = re.compile(r'"bbox_2d"\s{0,8}:\s{0,8}' + _QUAD.pattern)


@dataclass(frozen=True)
class BoxFormat:
    """How a model writes boxes: `name` picks the syntax, `scale` None means pixels."""

    name: str
    scale: float = None

    def _to_pixels(self, quad, width, height):
        x1, y1, x2, y2 = (float(v) for v in quad)
        if self.scale:
            x1, x2 = x1 * width / self.scale, x2 * width / self.scale
            y1, y2 = y1 * height / self.scale, y2 * height / self.scale
        return [x1, y1, x2, y2]

    def _from_pixels(self, box, width, height):
        if not self.scale:
            return [int(v) for v in box]
        x1, y1, x2, y2 = box
        s = self.scale
        return [round(x1 * s / width), round(y1 * s / height), round(x2 * s / width), round(y2 * s / height)]

    def find_quads(self, text):
        """The raw coordinate quadruples in `text`, in order of appearance."""
        if self.name == "canonical":
            return [m.groups() for m in _CANONICAL.finditer(text)]
        if self.name == "qwen2-vl":
            return [m.groups() for m in _QWEN2.finditer(text)]
        if self.name == "internvl":
            return [q.groups() for block in _INTERNVL_BLOCK.finditer(text) for q in _QUAD.finditer(block.group(1))]
        if self.name == "json-bbox2d":
            return [m.groups() for m in _BBOX2D.finditer(text)]
        raise ValueError(f"unknown box format {self.name!r}")

    def parse(self, text, width, height):
        """All boxes in `text` as pixel [x1,y1,x2,y2] floats (corners put in order)."""
        boxes = []
        for quad in self.find_quads(text or ""):
            x1, y1, x2, y2 = self._to_pixels(quad, width, height)
            boxes.append([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)])
        return boxes

    def render_one(self, box, width, height) -> str:
        x1, y1, x2, y2 = self._from_pixels(box, width, height)
        if self.name == "canonical":
            return "{<%d><%d><%d><%d>}" % (x1, y1, x2, y2)
        if self.name == "qwen2-vl":
            return "<|box_start|>(%d,%d),(%d,%d)<|box_end|>" % (x1, y1, x2, y2)
        if self.name == "internvl":
            return "<box>[[%d, %d, %d, %d]]</box>" % (x1, y1, x2, y2)
        if self.name == "json-bbox2d":
            return '{"bbox_2d": [%d, %d, %d, %d]}' % (x1, y1, x2, y2)
        raise ValueError(f"unknown box format {self.name!r}")

    def render(self, boxes, width, height) -> str:
        """Pixel boxes written the way this model writes them (used to rewrite our questions)."""
        return "".join(self.render_one(b, width, height) for b in boxes)

    @property
    def spec(self) -> str:
        if self.name == "json-bbox2d":
            return f"json-bbox2d:{'pixels' if not self.scale else _fmt_scale(self.scale)}"
        return self.name


def _fmt_scale(s):
    return str(int(s)) if float(s).is_integer() else str(s)


BOX_FORMAT_NAMES = ("canonical", "qwen2-vl", "internvl", "json-bbox2d")


def get_box_format(spec: str) -> BoxFormat:
    """'canonical' | 'qwen2-vl' | 'internvl' | 'json-bbox2d' | 'json-bbox2d:pixels' | 'json-bbox2d:1000'."""
    name, _, scale = spec.partition(":")
    if name == "canonical":
        return BoxFormat("canonical")
    if name in ("qwen2-vl", "internvl"):
        return BoxFormat(name, 1000.0)
    if name == "json-bbox2d":
        if scale in ("", "pixels", "pixel"):
            return BoxFormat(name)
        try:
            value = float(scale)
        except ValueError:
            value = 0.0
        if value <= 0:
            raise ValueError(f"json-bbox2d scale must be 'pixels' or a positive number, got {scale!r}")
        return BoxFormat(name, value)
    raise ValueError(f"unknown box format {spec!r}; known: {', '.join(BOX_FORMAT_NAMES)}")
