"""Arrow string columns for the dialogue builder and the task modules' `build`: string arrays,
list<string> arrays, str.format of one template over many rows at once, and the JSON literals of a
column (the ms-swift lines and the score's samples lines). Pure, no Beam."""
import string

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def strings(values):
    return pa.array(values, type=pa.string())


def offsets(lengths):
    """int32 list offsets of consecutive lists of these lengths."""
    return pa.array(np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))]).astype(np.int32))


def string_lists(lists):
    return pa.ListArray.from_arrays(offsets([len(v) for v in lists]), strings([s for v in lists for s in v]))


def empty_lists(n):
    return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()))


def join(*parts):
    """Element-wise concatenation of string arrays (and plain strings, repeated on every row)."""
    return pc.binary_join_element_wise(*parts, "")


def render(fmt, fields, n):
    """str.format of one template over n rows at once: fields maps a placeholder to a string array.
    Plain {name} placeholders become one element-wise join; anything fancier ({name!r}, {name:>5})
    falls back to Python's format per row, so the result is always what str.format gives."""
    parts, simple = [], True
    for literal, name, spec, conversion in string.Formatter().parse(fmt):
        if literal:
            parts.append(literal)
        if name is not None:
            if spec or conversion or name not in fields:
                simple = False
                break
            parts.append(fields[name])
    if simple and any(isinstance(p, pa.Array) for p in parts):
        return join(*parts)
    py = {name: array.to_pylist() for name, array in fields.items()}
    return strings([fmt.format(**{name: values[i] for name, values in py.items()}) for i in range(n)])


# json.dumps's escapes (ensure_ascii=False); the backslash first, so no escape is escaped again
JSON_ESCAPES = [("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\b", "\\b"), ("\f", "\\f")]
JSON_ESCAPES += [(chr(c), "\\u%04x" % c) for c in range(0x20) if chr(c) not in "\n\r\t\b\f"]


def json_strings(array, large=False):
    """The JSON literal of every value of a string array, as json.dumps(s, ensure_ascii=False) writes
    it ("null" for a null); only the values that need an escape are escaped. `large`: large_string
    values, for columns whose text may pass 2 GiB (a generate shard's lines)."""
    kind = pa.large_string() if large else pa.string()
    array = pc.cast(array, kind)
    needs = pc.fill_null(pc.match_substring_regex(array, r'[\x00-\x1f"\\]'), False)
    if pc.any(needs).as_py():
        some = array.filter(needs)
        for raw, escaped in JSON_ESCAPES:
            some = pc.replace_substring(some, raw, escaped)
        array = pc.replace_with_mask(array, needs, some)
    quote = pa.scalar('"', kind)
    return pc.fill_null(pc.binary_join_element_wise(quote, array, quote, pa.scalar("", kind)), pa.scalar("null", kind))
