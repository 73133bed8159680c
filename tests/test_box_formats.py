"""The declared box formats of today's families (docs/rules.md section 12): realistic answers read
back to pixels with the declared scale, round trips through our question rewriting, several boxes,
garbage and out-of-range values."""
import time

import pytest

from sarchat.transforms.box_formats import BOX_FORMAT_NAMES, get_box_format
from sarchat.transforms import answer_words as AW
from sarchat.transforms import tasks as T
from sarchat.transforms.score import parsing as P

W, H = 800, 400  # not square, so x and y mix-ups show


@pytest.mark.parametrize("spec, text, want", [
    # LLaVA-1.5 zero-shot: [0..1] floats
    ("xyxy:1", "The ship is located at [0.25, 0.5, 0.375, 0.75].", [[200, 200, 300, 300]]),
    # Gemma-style [ymin, xmin, ymax, xmax] on 0..1000
    ("yxyx:1000", 'Here: ```json\n[{"box_2d": [500, 250, 750, 375], "label": "ship"}]\n```', [[200, 200, 300, 300]]),
    # DeepSeek-VL2 grounding on 0..999
    ("deepseek-det", "<|ref|>ship<|/ref|><|det|>[[333, 0, 999, 999]]<|/det|>", [[800 * 333 / 999, 0, 800, 400]]),
    # Qwen3-VL: JSON bbox_2d, 0..1000 relative
    ("json-bbox2d:1000", '```json\n[\n\t{"bbox_2d": [250, 500, 375, 750], "label": "ship"}\n]\n```',
     [[200, 200, 300, 300]]),
    # GLM-4.1V
    ("glm-box", "The ship is at <|begin_of_box|>[250, 500, 375, 750]<|end_of_box|>.", [[200, 200, 300, 300]]),
    # PaliGemma: y1 x1 y2 x2, 1024 bins
    ("paligemma-loc", "<loc0512><loc0256><loc0768><loc0384> ship", [[200, 200, 300, 300]]),
    # Florence-2: x1 y1 x2 y2, 1000 bins read as their centres
    ("florence-loc", "ship<loc_250><loc_500><loc_375><loc_750>", [[200.4, 200.2, 300.4, 300.2]]),
])
def test_realistic_answer_to_pixels(spec, text, want):
    assert AW.parse_boxes(text, get_box_format(spec), W, H) == [pytest.approx(b) for b in want]


@pytest.mark.parametrize("spec, text, n", [
    ("xyxy:1", "Ships at [0.1, 0.1, 0.2, 0.2] and [0.5, 0.5, 0.6, 0.7].", 2),
    ("yxyx:1000", '[{"box_2d": [1, 2, 3, 4], "label": "car"}, {"box_2d": [5, 6, 7, 8], "label": "car"}]', 2),
    ("deepseek-det", "<|ref|>ships<|/ref|><|det|>[[1, 2, 3, 4], [5, 6, 7, 8]]<|/det|>", 2),
    ("glm-box", "<|begin_of_box|>[[1, 2, 3, 4], [5, 6, 7, 8]]<|end_of_box|> and <|begin_of_box|>[9, 9, 10, 10]"
                "<|end_of_box|>", 3),
    ("paligemma-loc", "<loc0001><loc0002><loc0003><loc0004> ship ; <loc0005><loc0006><loc0007><loc0008> tank", 2),
    ("florence-loc", "ship<loc_1><loc_2><loc_3><loc_4>ship<loc_5><loc_6><loc_7><loc_8>", 2),
])
def test_several_boxes(spec, text, n):
    assert len(AW.parse_boxes(text, get_box_format(spec), W, H)) == n


@pytest.mark.parametrize("spec", ["xyxy:1", "yxyx:1000", "deepseek-det", "glm-box", "paligemma-loc",
                                  "florence-loc", "json-bbox2d:1000", "xyxy:pixels", "yxyx"])
def test_question_box_round_trip(spec):
    fmt = get_box_format(spec)
    box = [120, 40, 610, 390]
    text = fmt.render([box], W, H)
    (back,) = fmt.parse("There is a ship " + text, W, H)
    # bins lose at most one bin; 0..1 floats keep three decimals
    tol = {"paligemma-loc": W / 1024, "florence-loc": W / 1000}.get(fmt.name, 1.0)
    assert back == pytest.approx(box, abs=tol)
    assert get_box_format(fmt.spec) == fmt  # the recorded spec reads back as the same format


def test_rendered_forms():
    box = [200, 100, 400, 300]
    assert get_box_format("xyxy:1").render_one(box, W, H) == "[0.25, 0.25, 0.5, 0.75]"
    assert get_box_format("yxyx:1000").render_one(box, W, H) == "[250, 250, 750, 500]"
    assert get_box_format("deepseek-det").render_one(box, W, H) == "<|det|>[[250, 250, 500, 749]]<|/det|>"
    assert get_box_format("glm-box").render_one(box, W, H) == "<|begin_of_box|>[250, 250, 500, 750]<|end_of_box|>"
    assert get_box_format("paligemma-loc").render_one(box, W, H) == "<loc0256><loc0256><loc0768><loc0512>"
    assert get_box_format("florence-loc").render_one(box, W, H) == "<loc_250><loc_250><loc_500><loc_750>"
    # a box at the far edge stays within the token vocabulary
    assert get_box_format("paligemma-loc").render_one([0, 0, W, H], W, H) == "<loc0000><loc0000><loc1023><loc1023>"
    assert get_box_format("florence-loc").render_one([0, 0, W, H], W, H) == "<loc_0><loc_0><loc_999><loc_999>"


def test_scale_is_declared_never_guessed():
    text = "[0.25, 0.5, 0.375, 0.75] [250, 500, 375, 750]"
    # LLaVA floats read on 0..1; the same-looking integer quad too (800 times the image: not rescaled)
    assert AW.parse_boxes(text, get_box_format("xyxy:1"), W, H)[1] == [200000, 200000, 300000, 300000]
    assert AW.parse_boxes(text, get_box_format("xyxy:1000"), W, H)[0] == pytest.approx([0.2, 0.2, 0.3, 0.3])
    # x first versus y first: the same numbers, other boxes
    assert AW.parse_boxes("[100, 200, 300, 400]", get_box_format("yxyx:1000"), W, H) == [[160, 40, 320, 120]]
    assert AW.parse_boxes("[100, 200, 300, 400]", get_box_format("xyxy:1000"), W, H) == [[80, 80, 240, 160]]


@pytest.mark.parametrize("spec, text", [
    ("deepseek-det", "[[1, 2, 3, 4]]"),                                   # no <|det|> block
    ("deepseek-det", "<|det|>[[1, 2, 3]]<|/det|>"),                       # three numbers
    ("deepseek-det", "<|det|>[[1, 2, 3, 4]]"),                            # never closed
    ("glm-box", "<|begin_of_box|>[1, 2, 3, 4]"),
    ("glm-box", "<|begin_of_box|>ship<|end_of_box|>"),
    ("paligemma-loc", "<loc0001><loc0002><loc0003>"),                     # three tokens
    ("paligemma-loc", "<loc1><loc2><loc3><loc4>"),                        # not four digits
    ("paligemma-loc", "<loc_1><loc_2><loc_3><loc_4>"),                    # Florence's tokens
    ("florence-loc", "<loc0001><loc0002><loc0003><loc0004>"),             # PaliGemma's tokens
    ("xyxy:1", "(0.1, 0.2, 0.3, 0.4)"),
    ("xyxy:1", "[a, b, c, d]"),
    ("yxyx:1000", "[1, 2, 3, 4, 5]"),
])
def test_garbage_is_no_box(spec, text):
    assert AW.parse_boxes(text, get_box_format(spec), W, H) == []


def test_out_of_range_values():
    # location tokens outside the vocabulary are no box (PaliGemma has <loc0000>..<loc1023>,
    # Florence-2 <loc_0>..<loc_999>); the rest of the answer is still read
    assert AW.parse_boxes("<loc1024><loc0000><loc0010><loc0010> <loc0000><loc0000><loc0512><loc0512>",
                         get_box_format("paligemma-loc"), W, H) == [[0, 0, 400, 200]]
    assert AW.parse_boxes("<loc_1000><loc_0><loc_10><loc_10>", get_box_format("florence-loc"), W, H) == []
    # bracketed values are taken as written, not clamped (docs/rules.md section 12): a box past
    # the edge keeps its size, so its IoU with the truth is what the model meant
    assert AW.parse_boxes("[-0.1, 0.5, 1.25, 1.0]", get_box_format("xyxy:1"), W, H) == [
        pytest.approx([-80, 200, 1000, 400])]
    assert AW.parse_boxes("<|det|>[[0, 0, 1200, 999]]<|/det|>", get_box_format("deepseek-det"), W, H) == [
        pytest.approx([0, 0, 1200 * 800 / 999, 400])]
    # corners written the wrong way round are put in order
    assert AW.parse_boxes("<|begin_of_box|>[500, 500, 250, 250]<|end_of_box|>", get_box_format("glm-box"), W, H) == [
        [200, 100, 400, 200]]


def test_labels_before_and_after_their_boxes():
    r = T.grounding.parse("<|ref|>ship<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|><|ref|>tank<|/ref|><|det|>[[5, 6, 7, 8], "
                          "[9, 9, 10, 10]]<|/det|>", get_box_format("deepseek-det"), W, H)
    assert r["box_categories"] == ["ship", "tank", "tank"]
    r = T.grounding.parse("<loc0001><loc0002><loc0003><loc0004> ship ; <loc0005><loc0006><loc0007><loc0008> tank ; "
                          "<loc0009><loc0009><loc0010><loc0010>", get_box_format("paligemma-loc"), W, H)
    assert r["box_categories"] == ["ship", "tank", None]
    r = T.grounding.parse("ship<loc_1><loc_2><loc_3><loc_4>bridge<loc_5><loc_6><loc_7><loc_8>",
                          get_box_format("florence-loc"), W, H)
    assert r["box_categories"] == ["ship", "bridge"]


@pytest.mark.parametrize("spec, text", [
    ("paligemma-loc", "<loc0100><loc0200><loc0300><loc0400> ship ; 3 ships"),
    ("florence-loc", "<loc_100><loc_200><loc_300><loc_400> There are 3 ships"),
    ("deepseek-det", "<|det|>[[100, 200, 300, 400]]<|/det|> There are 3 ships"),
    ("glm-box", "<|begin_of_box|>[100, 200, 300, 400]<|end_of_box|> There are 3 ships"),
])
def test_coordinates_are_never_the_count(spec, text):
    r = T.count.parse(text, get_box_format(spec), W, H)
    assert r["count"] == 3 and len(r["boxes"]) == 1


@pytest.mark.parametrize("spec", ["nope", "xyxy:0", "xyxy:-3", "xyxy:inf", "yxyx:abc", "glm-box:1000",
                                  "paligemma-loc:1024", "canonical:pixels"])
def test_bad_specs_say_what_is_known(spec):
    with pytest.raises(ValueError, match="scale must be|unknown box format"):
        get_box_format(spec)


MB = 1 << 20


@pytest.mark.parametrize("spec, text", [
    ("deepseek-det", "<|det|>[[1, 2, 3" * (MB // 16)),
    ("glm-box", "<|begin_of_box|>[1, 2, 3, " * (MB // 26)),
    ("paligemma-loc", "<loc0001><loc0002><loc0003>x" * (MB // 28)),  # always one token short
    ("florence-loc", "<loc_1><loc_2><loc_3>x" * (MB // 22)),
    ("xyxy:1", "[0.1, 0.2, 0.3" * (MB // 14)),
    ("yxyx:1000", "[[[[" * (MB // 4)),
])
def test_one_megabyte_adversarial_input_is_unparseable(spec, text):
    start = time.perf_counter()
    for task in ("count", "grounding", "refer"):
        assert P.parse_answer(task, text, get_box_format(spec), 512, 512)["status"] == AW.UNPARSEABLE
    assert time.perf_counter() - start < 60.0  # a hang guard, not a speed test


def test_every_declared_name_has_a_format():
    for name in BOX_FORMAT_NAMES:
        spec = name + (":1000" if name in ("json-bbox2d", "xyxy", "yxyx") else "")
        assert get_box_format(spec).spec.startswith(name)


@pytest.mark.parametrize("name, spec", [
    ("xyxy:1", "xyxy:1"), ("yxyx:1000", "yxyx:1000"), ("deepseek-det", "deepseek-det"), ("glm-box", "glm-box"),
    ("paligemma-loc", "paligemma-loc"), ("florence-loc", "florence-loc"), ("llava-1.5-native", "xyxy:1"),
    ("deepseek-vl2-native", "deepseek-det"), ("qwen3-vl", "json-bbox2d:1000"), ("gemma-3", "yxyx:1000"),
])
def test_score_adapter_flag_reads_the_new_formats(name, spec):
    from sarchat.transforms.score.box_format_choice import FormatChooser, discover_run_formats

    chooser = FormatChooser.from_flags([f"m={name}"])
    assert chooser.for_model("m").spec == spec
    # a run manifest recording the new spec is read back too
    assert discover_run_formats([{"model": "m", "box_format": spec}]) == {"m": spec}
