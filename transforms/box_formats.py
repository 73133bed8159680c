"""Box formats a model may answer in (docs/rules.md section 12). Pure functions, no Beam.

A format's scale is declared by the model adapter, never guessed from the values:
  canonical        {<x1><y1><x2><y2>}                                  pixels
  qwen2-vl         <|box_start|>(x1,y1),(x2,y2)<|box_end|>              0..1000
  internvl         <box>[[x1, y1, x2, y2]]</box>                        0..1000 (several boxes: [[..],[..]])
  json-bbox2d[:S]  {"bbox_2d": [x1, y1, x2, y2], ...}                   S = 'pixels' (default) or a number such as 1000
                                                                        (Qwen2.5-VL: pixels, Qwen3-VL: 1000)
  xyxy[:S]         [x1, y1, x2, y2] anywhere in the text                S: LLaVA-1.5 writes [0..1] floats (xyxy:1)
  yxyx[:S]         [ymin, xmin, ymax, xmax] anywhere in the text        S: Gemma-style 0..1000 (yxyx:1000)
  deepseek-det     <|det|>[[x1, y1, x2, y2]]<|/det|>                    0..999 (DeepSeek-VL2; several: [[..],[..]])
  glm-box          <|begin_of_box|>[x1, y1, x2, y2]<|end_of_box|>       0..1000 (GLM-4.1V; [[..],[..]] too)
  paligemma-loc    <locY1><locX1><locY2><locX2>, four digits each       1024 bins, y first: v = bin * size / 1024
  florence-loc     <loc_X1><loc_Y1><loc_X2><loc_Y2>                     1000 bins, bin centres: v = (bin + 0.5) * size / 1000
A location token outside its vocabulary (<loc1024>, <loc_1000>) is no box; bracketed values are
taken as written (no clamping, docs/rules.md section 12).
All regexes use bounded, non-nested quantifiers so they run in linear time on any input.
"""
import math
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
_DEEPSEEK_BLOCK = re.compile(r"<\|det\|>([^<]{0,4000})<\|/det\|>")
_GLM_BLOCK = re.compile(r"<\|begin_of_box\|>([^<]{0,4000})<\|end_of_box\|>")
_QUAD = re.compile(r"\[\s{0,8}%s%s%s%s%s%s%s\s{0,8}\]" % (_NUM, _SEP, _NUM, _SEP, _NUM, _SEP, _NUM))
_BBOX2D = re.compile(r'"bbox_2d"\s{0,8}:\s{0,8}' + _QUAD.pattern)
_PALIGEMMA = re.compile(r"<loc(\d{4})>\s{0,2}<loc(\d{4})>\s{0,2}<loc(\d{4})>\s{0,2}<loc(\d{4})>")
_FLORENCE = re.compile(r"<loc_(\d{1,4})>\s{0,2}<loc_(\d{1,4})>\s{0,2}<loc_(\d{1,4})>\s{0,2}<loc_(\d{1,4})>")

# Each format's syntax: (the pattern of one box, the block the boxes sit in or None, how one box is
# written). The %s formats write a coordinate as it comes (an integer or a float, `_num`).
_SYNTAX = {
    "canonical": (_CANONICAL, None, "{<%d><%d><%d><%d>}"),
    "qwen2-vl": (_QWEN2, None, "<|box_start|>(%d,%d),(%d,%d)<|box_end|>"),
    "internvl": (_QUAD, _INTERNVL_BLOCK, "<box>[[%d, %d, %d, %d]]</box>"),
    "json-bbox2d": (_BBOX2D, None, '{"bbox_2d": [%s, %s, %s, %s]}'),
    "xyxy": (_QUAD, None, "[%s, %s, %s, %s]"),
    "yxyx": (_QUAD, None, "[%s, %s, %s, %s]"),
    "deepseek-det": (_QUAD, _DEEPSEEK_BLOCK, "<|det|>[[%d, %d, %d, %d]]<|/det|>"),
    "glm-box": (_QUAD, _GLM_BLOCK, "<|begin_of_box|>[%d, %d, %d, %d]<|end_of_box|>"),
    "paligemma-loc": (_PALIGEMMA, None, "<loc%04d><loc%04d><loc%04d><loc%04d>"),
    "florence-loc": (_FLORENCE, None, "<loc_%d><loc_%d><loc_%d><loc_%d>"),
}
# Formats with a fixed scale (a number: 0..scale of the image) and those whose scale is part of
# the spec (`NAME[:S]`, pixels when left out).
_FIXED_SCALE = {"qwen2-vl": 1000.0, "internvl": 1000.0, "deepseek-det": 999.0, "glm-box": 1000.0,
                "paligemma-loc": 1024.0, "florence-loc": 1000.0}
_SCALED = ("json-bbox2d", "xyxy", "yxyx")
# Location-token formats: bins 0..N-1, quantised with floor; Florence-2 reads a bin as its centre.
_BINS = {"paligemma-loc": (1024, 0.0), "florence-loc": (1000, 0.5)}
# Formats that write y before x.
_Y_FIRST = ("yxyx", "paligemma-loc")


@dataclass(frozen=True)
class BoxFormat:
    """How a model writes boxes: `name` picks the syntax, `scale` None means pixels."""

    name: str
    scale: float = None

    @property
    def label_after(self) -> bool:
        """Whether the model writes an object's label after its box (PaliGemma: `<loc..>x4 ship ;`)."""
        return self.name == "paligemma-loc"

    def _syntax(self):
        if self.name not in _SYNTAX:
            raise ValueError(f"unknown box format {self.name!r}")
        return _SYNTAX[self.name]

    def _to_pixels(self, quad, width, height):
        a, b, c, d = (float(v) for v in quad)
        if self.name in _BINS:
            bins, offset = _BINS[self.name]
            if max(a, b, c, d) > bins - 1:
                return None  # no such location token
            a, b, c, d = a + offset, b + offset, c + offset, d + offset
        x1, y1, x2, y2 = (b, a, d, c) if self.name in _Y_FIRST else (a, b, c, d)
        if self.scale:
            x1, x2 = x1 * width / self.scale, x2 * width / self.scale
            y1, y2 = y1 * height / self.scale, y2 * height / self.scale
        return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]  # corners put in order

    def _from_pixels(self, box, width, height):
        if not self.scale:
            return [int(v) for v in box]
        x1, y1, x2, y2 = box
        s = self.scale
        out = [x1 * s / width, y1 * s / height, x2 * s / width, y2 * s / height]
        if self.name in _BINS:
            top = _BINS[self.name][0] - 1
            return [min(top, max(0, math.floor(v))) for v in out]
        if s < 10:  # [0..1] floats (LLaVA-1.5): three decimals
            return [round(v, 3) for v in out]
        return [round(v) for v in out]

    def parse(self, text, width, height):
        """All boxes in `text` as pixel [x1,y1,x2,y2] floats (corners put in order). A box's raw
        quadruple is read as written (y first for the y-first formats), inside its block if any."""
        box, block, _ = self._syntax()
        spans = [text or ""] if block is None else [b.group(1) for b in block.finditer(text or "")]
        boxes = (self._to_pixels(q.groups(), width, height) for span in spans for q in box.finditer(span))
        return [b for b in boxes if b is not None]

    def render_one(self, box, width, height) -> str:
        x1, y1, x2, y2 = self._from_pixels(box, width, height)
        values = (y1, x1, y2, x2) if self.name in _Y_FIRST else (x1, y1, x2, y2)
        if self.name in _SCALED:
            values = tuple(_num(v) for v in values)
        return self._syntax()[2] % values

    def render(self, boxes, width, height) -> str:
        """Pixel boxes written the way this model writes them (used to rewrite our questions)."""
        return "".join(self.render_one(b, width, height) for b in boxes)

    @property
    def spec(self) -> str:
        if self.name in _SCALED:
            return f"{self.name}:{'pixels' if not self.scale else _num(self.scale)}"
        return self.name


def _num(v):
    return str(int(v)) if float(v).is_integer() else repr(float(v))


BOX_FORMAT_NAMES = tuple(_SYNTAX)


def get_box_format(spec: str) -> BoxFormat:
    """'canonical' | 'qwen2-vl' | 'internvl' | 'deepseek-det' | 'glm-box' | 'paligemma-loc' |
    'florence-loc' | NAME[:pixels|:S] for NAME in json-bbox2d, xyxy, yxyx ('json-bbox2d:1000',
    'xyxy:1', 'yxyx:1000')."""
    name, sep, scale = (spec or "").partition(":")
    if name == "canonical" and not sep:
        return BoxFormat("canonical")
    if name in _FIXED_SCALE and not sep:
        return BoxFormat(name, _FIXED_SCALE[name])
    if name in _SCALED:
        if scale in ("", "pixels", "pixel"):
            return BoxFormat(name)
        try:
            value = float(scale)
        except ValueError:
            value = 0.0
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} scale must be 'pixels' or a positive number, got {scale!r}")
        return BoxFormat(name, value)
    raise ValueError(f"unknown box format {spec!r}; known: {', '.join(BOX_FORMAT_NAMES)} "
                     f"({', '.join(_SCALED)} take :pixels or :SCALE)")
