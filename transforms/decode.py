"""One decoding layer for every text the toolkit reads (docs/rules.md sections 1, 11 and 13): COCO
JSON, prediction JSON/JSONL(.gz), lmms-eval logs, VLMEvalKit TSV/CSV, endpoint replies, manifests.

What can go wrong in a text, and what becomes of it, decided here once:

- bytes: not UTF-8, a `.gz` that is not gzip or is cut short (never read as complete), a path that
  is a folder -> `InputError` naming the file (one line);
- JSON: malformed, nested deeper than Python's recursion limit, a number beyond float (`1e400`
  parses as infinity) -> `Problem` with a reason; a lone UTF-16 surrogate in any string
  (`"\\ud800"`, which nothing can write as UTF-8) -> `Problem("lone_surrogate")`;
- tables: a field beyond the csv module's default limit is read (a long answer is an answer), a
  quoted field torn by the end of the file -> `InputError` naming the file;
- values: `number(v)` is a finite float from an int or float only (strings, booleans, lists and
  numbers beyond float are not numbers), `prediction_text(v)` a string only (a list or object
  given as a prediction is not text).

A caller that reads records turns a `Problem` into a counted reject (its `reason`); a caller that
reads a whole file turns it into one line (`Problem.as_input_error(path)`). Backend replies are
kept, escaped (`escape_surrogates`). Vocabulary layer: standard library and errors only.
"""
import codecs
import csv
import gzip
import io
import json
import math
import os
import re
import zlib

from sarchat.transforms.errors import InputError

_BOM = codecs.BOM_UTF8.decode("utf-8")
# A field of a prediction table may be long (an answer with many boxes); the csv module's default
# limit (131072 characters) is not a property of the data.
TABLE_FIELD_LIMIT = 1 << 30


class Problem(ValueError):
    """A text or record that cannot be used: `reason` (a reject reason), `detail` (for a person)."""

    def __init__(self, reason, detail):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def as_input_error(self, source) -> InputError:
        return InputError(f"{source}: {self.detail}")


# A lone surrogate in a decoded value comes from a \\uD800-\\uDFFF escape of the JSON text, or (a str
# given as it is) from the text itself; a text with neither needs no walk through its value.
_MAYBE_SURROGATE = re.compile("\\\\u[dD][89a-fA-F]|[\ud800-\udfff]")


def has_lone_surrogate(value) -> bool:
    """Whether a decoded JSON value holds a string (or key) that is not valid Unicode text."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(v, dict):
            stack.extend(v.items())  # (key, value) pairs, walked as lists are
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return False


def _no_infinity(text):
    value = float(text)
    if math.isinf(value):
        raise Problem("number_out_of_range", f"the number {text[:40]} is beyond the range of a float")
    return value


def loads(data, finite=True):
    """A JSON text (bytes or str) -> its value, or `Problem` (a byte order mark is malformed JSON, as
    json.loads says: readers that accept one, e.g. JSONL lines, strip it first).
    `finite=False` reads a number beyond float as infinity (COCO boxes: a `non_finite` reject)."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise Problem("not_utf8", f"not UTF-8 text (byte {e.start}): {e.reason}") from None
    try:
        value = json.loads(data, parse_float=_no_infinity) if finite else json.loads(data)
    except Problem:
        raise
    except json.JSONDecodeError as e:
        raise Problem("malformed_json", f"malformed JSON at line {e.lineno} column {e.colno} (char {e.pos}): "
                                        f"{e.msg}") from None
    except RecursionError:
        raise Problem("too_deeply_nested", "JSON nested too deeply to read") from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise Problem("number_out_of_range", f"a number out of range ({e})") from None
    if _MAYBE_SURROGATE.search(data) and has_lone_surrogate(value):
        raise Problem("lone_surrogate", "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text")
    return value


def prediction_text(value):
    """The text of a prediction: a string (None stays None); a Problem for a list, an object, a
    number or a string that is not valid Unicode."""
    if value is not None and not isinstance(value, str):
        raise Problem("prediction_not_text", f"the prediction is a {type(value).__name__}, not a string")
    if value is not None and has_lone_surrogate(value):
        raise Problem("lone_surrogate", "the prediction holds a lone UTF-16 surrogate")
    return value


def escape_surrogates(text: str) -> str:
    """A string any UTF-8 writer accepts: lone surrogates written as `\\udXXX` escapes, the rest kept."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(text, str) else text


def escape_record(value):
    """escape_surrogates over every string of a JSON-like record (dicts, lists), keys included."""
    if isinstance(value, str):
        return escape_surrogates(value)
    if isinstance(value, dict):
        return {escape_record(k): escape_record(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_record(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# bytes of a file


def _gunzip_error(source, exc) -> InputError:
    if isinstance(exc, EOFError):
        return InputError(f"{source} is cut short (the gzip stream ends before its end mark): a truncated or "
                          "partly copied file, not read; copy it again")
    return InputError(f"{source} is not a valid gzip file ({type(exc).__name__}: {exc}); not read")


def gunzip(data: bytes, source) -> bytes:
    """The whole content of gzip bytes; InputError naming the file when it is cut short or not gzip."""
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as exc:
        raise _gunzip_error(source, exc) from None


class GzipLines:
    """Lines of a gzip stream (a file object of its compressed bytes), checked to the end: a stream
    cut short or corrupt raises InputError naming `source` instead of ending quietly."""

    def __init__(self, raw, source):
        self.source = source
        self.f = gzip.GzipFile(fileobj=raw, mode="rb")

    def readline(self):
        try:
            return self.f.readline()
        except (EOFError, OSError, zlib.error) as exc:
            raise _gunzip_error(self.source, exc) from None


def check_is_file(path, what="input"):
    """InputError naming a local path that is a folder (read as a file it fails with EISDIR)."""
    p = str(path)
    if "://" not in p and os.path.isdir(p):
        raise InputError(f"{what} {p} is a folder, not a file")


def table_rows(text, delimiter, source):
    """The rows of a TSV/CSV text; InputError naming the file for a quoted field torn by the end of
    the file or any other csv error."""
    old = csv.field_size_limit()
    csv.field_size_limit(TABLE_FIELD_LIMIT)
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise InputError(f"{source} is not a well-formed {'TSV' if delimiter == chr(9) else 'CSV'} table "
                         f"({exc}; a quoted field torn by the end of the file?); not read") from None
    finally:
        csv.field_size_limit(old)
