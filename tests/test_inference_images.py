"""Image helpers of the inference stage: the cheaper check (a JPEG decoded at 1/8 scale) beside
the full decode, and the per-path cache of encoded images the openai backend sends from."""
import base64
import io

import numpy as np
import pytest
from PIL import Image

from sarchat.inference.dataset import ImageCache, ImageError, encode_image, image_data_url


def _encoded(mode, fmt, size=(64, 48), **save):
    rng = np.random.default_rng(7)
    w, h = size
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 60000, (h, w), dtype=np.uint16))
    else:
        channels = {"L": 1, "RGB": 3, "RGBA": 4}.get(mode, 1)
        arr = rng.integers(0, 255, (h, w, channels) if channels > 1 else (h, w), dtype=np.uint8)
        img = Image.fromarray(arr).convert(mode) if mode != "P" else Image.fromarray(arr).convert("P")
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


@pytest.mark.parametrize("mode,fmt,pad", [("L", "JPEG", 0), ("RGB", "JPEG", 0), ("L", "PNG", 0), ("RGBA", "PNG", 0),
                                          ("P", "PNG", 0), ("I;16", "PNG", 0), ("L", "BMP", 0), ("L", "PNG", 28),
                                          ("L", "JPEG", 16)])
def test_the_cheaper_check_gives_the_same_data_url_as_the_full_decode(mode, fmt, pad):
    data = _encoded(mode, fmt)
    cheap, size = encode_image(data, "a", pad, expected_size=(64, 48), full_decode=False)
    assert size == (64, 48)
    assert cheap == image_data_url(data, "a", pad, expected_size=(64, 48))  # the full-decode path
    as_is = fmt in ("JPEG", "PNG") and mode != "I;16" and (not pad or (64 % pad == 0 and 48 % pad == 0))
    assert (cheap.split(",", 1)[1] == base64.b64encode(data).decode()) == as_is


def test_jpegs_sent_as_they_are_are_decoded_at_a_reduced_scale(monkeypatch):
    from PIL import JpegImagePlugin

    drafts = []
    real = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, mode, size: drafts.append(size) or real(self, mode, size))
    encode_image(_encoded("L", "JPEG"), "a", full_decode=False)
    assert drafts == [(8, 6)]
    encode_image(_encoded("L", "JPEG"), "a", full_decode=True)
    assert drafts == [(8, 6)]


def _garbled_huffman_table(jpeg):
    """A JPEG whose header still opens (size, mode) but whose Huffman table is nonsense."""
    at = jpeg.find(b"\xff\xc4")
    return jpeg[:at + 5] + b"\xff" * 16 + jpeg[at + 21:]


@pytest.mark.parametrize("full_decode", [False, True])
def test_the_check_catches_what_the_full_decode_catches(full_decode):
    """Truncation and garbage the header does not show: vLLM's server would answer these on a blank
    image (tests/test_real_vllm.py), so they must fail here, per sample."""
    png, jpeg = _encoded("L", "PNG"), _encoded("L", "JPEG")
    at = png.find(b"IDAT") + 20
    flipped = png[:at] + bytes([png[at] ^ 0xFF]) + png[at + 1:]
    for bad in (png[:len(png) // 2], flipped, jpeg[:len(jpeg) // 2], jpeg[:-2], _garbled_huffman_table(jpeg),
                b"not an image"):
        with pytest.raises(ImageError, match=r"^corrupt image a\.x: "):
            encode_image(bad, "a.x", full_decode=full_decode)


def test_cache_reads_each_image_once_and_checks_every_row():
    files = {"a.png": _encoded("L", "PNG"), "b.jpg": _encoded("L", "JPEG")}
    reads = []

    def read(location):
        reads.append(location)
        return files[location]

    cache = ImageCache(read_image=read, encode=lambda url: url.encode(), full_decode=False)
    order = ["a.png"] * 5 + ["b.jpg"] * 4
    got = [cache.get(loc, (64, 48)) for loc in order]
    assert reads == ["a.png", "b.jpg"] and (cache.hits, cache.misses) == (7, 2)
    assert got[0] == image_data_url(files["a.png"]).encode() and got[-1] == image_data_url(files["b.jpg"]).encode()
    with pytest.raises(ImageError, match=r"image a.png is 64x48 pixels, the dataset says 48x64"):
        cache.get("a.png", (48, 64))  # a hit is still checked against its row
    cache.max_pixels = 3000
    with pytest.raises(ImageError, match="more than --max-image-pixels 3000"):
        cache.get("a.png", (64, 48))


def test_cache_is_bounded_by_bytes_least_recently_used_first():
    files = {name: _encoded("L", "PNG", size=(32, 32 + k)) for k, name in enumerate("abcd")}
    reads = []

    def read(location):
        reads.append(location)
        return files[location]

    one = len(image_data_url(files["d"]))
    cache = ImageCache(read_image=read, max_bytes=2 * one + 10)
    for loc in "abab" + "c" + "b" + "a":  # c evicts a (b was used since); a comes back and evicts c
        cache.get(loc)
    assert reads == ["a", "b", "c", "a"]
    tiny = ImageCache(read_image=read, max_bytes=1)  # the newest entry stays even beyond the bound
    tiny.get("d")
    tiny.get("d")
    assert reads[-1:] == ["d"] and tiny.hits == 1


def test_cache_does_not_keep_failures():
    state = {"data": _encoded("L", "PNG")[:-40]}
    cache = ImageCache(read_image=lambda loc: state["data"], full_decode=False)
    for _ in range(2):
        with pytest.raises(ImageError, match="corrupt image x"):
            cache.get("x")
    assert cache.misses == 0
    state["data"] = _encoded("L", "PNG")  # repaired: the next sample of it goes through
    assert cache.get("x").startswith("data:image/png;base64,")
