"""TFRecord files of tf.train.Example records, written without TensorFlow.

Each Example is assembled from its wire format directly, per column, with Arrow's element-wise
binary joins (one protobuf object per row took ~15 us, most of an all-formats run): a
tf.train.Example is Features{feature: map<string, Feature>}, which deterministic serialization
writes as map entries sorted by key, each `0x0a len {0x0a len key, 0x12 len Feature}`, a Feature
being `0x0a len BytesList` or `0x1a len Int64List` (packed varints). So the bytes are what
TensorFlow itself writes: tests/test_dialogue_builder.py pins them against the protobuf runtime's
(tests/tfrecord_reference.py), and TensorFlow reads them in tests/test_tfrecord_tensorflow.py.
Framing is TFRecord's: uint64 length, masked CRC32C of the length, data, masked CRC32C of the data.
Field mapping of a dialogue row:
  strings            -> bytes_list (a null subset -> an empty list)
  ints               -> int64_list
  list<string>       -> bytes_list
  gt_boxes           -> int64_list, flattened x1,y1,x2,y2 per box (reshape to [-1, 4])
  messages           -> messages_role and messages_content, two parallel bytes_lists
Read back with tf.data.TFRecordDataset + tf.io.parse_single_example (VarLenFeature per field).
"""
import struct

import google_crc32c
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sarchat.transforms.schema import USER_PREFIX

STR_FIELDS = ("id", "split", "task", "subset", "image_path", "question", "answer", "template_id")
INT_FIELDS = ("image_id", "width", "height", "gt_count")
STRLIST_FIELDS = ("gt_categories", "gt_cells", "gt_sizes", "gt_shapes", "gt_relations")
_BIN = pa.large_binary()
_EMPTY = pa.scalar(b"", _BIN)


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varints(values):
    """Varint encodings (64-bit two's complement, as protobuf writes int64) of an int array: a binary array."""
    v = np.asarray(values, dtype=np.int64).view(np.uint64)
    n = len(v)
    nbytes = np.ones(n, dtype=np.int64)
    for k in range(1, 10):
        nbytes += v >= (np.uint64(1) << np.uint64(7 * k))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(nbytes, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    start = offsets[:-1]
    for k in range(int(nbytes.max()) if n else 0):
        rows = nbytes > k
        byte = ((v[rows] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        byte |= np.where(nbytes[rows] > k + 1, np.uint8(0x80), np.uint8(0))
        data[start[rows] + k] = byte
    return pa.Array.from_buffers(_BIN, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _delimited(tag: bytes, payload, omit_empty=False):
    """tag + varint(len) + payload per row (payload a binary array); nothing for an empty payload
    when omit_empty (a packed repeated field with no values is not written)."""
    lengths = np.asarray(pc.binary_length(payload).fill_null(0), dtype=np.int64)
    out = pa_join(tag, _varints(lengths), payload)
    if omit_empty:
        out = pc.if_else(pa.array(lengths > 0), out, _EMPTY)
    return out


def _joined(offsets, elements):
    """Per row, its elements (offsets into `elements`, from 0) concatenated."""
    return pc.binary_join(pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), elements), _EMPTY)


def concat_binary(array) -> bytes:
    """The elements of a binary or string array, concatenated."""
    return _joined([0, len(array)], array.cast(_BIN))[0].as_py()


def _bytes_list(values):
    """BytesList payload per row from a list<string> array."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    offsets = values.offsets.to_numpy().astype("int64") - values.offsets[0].as_py()
    return _joined(offsets, _delimited(b"\x0a", values.flatten().cast(_BIN)))


def pa_join(*parts):
    """Element-wise concatenation of large_binary arrays and bytes constants."""
    parts = [pa.scalar(p, _BIN) if isinstance(p, bytes) else p for p in parts]
    return pc.binary_join_element_wise(*parts, _EMPTY)


def _constant(tag: bytes, *values: bytes) -> bytes:
    """tag + varint(len) + value of each constant, concatenated."""
    return concat_binary(_delimited(tag, pa.array(values, _BIN)))


def examples_of_table(table):
    """A DIALOGUE_SCHEMA table -> large_binary array of serialized tf.train.Example, one per row."""
    n = table.num_rows
    col = {name: table.column(name).combine_chunks() for name in table.column_names}
    features = {}
    for name in STR_FIELDS:  # a null (subset) is an empty Feature: its bytes_list is never set
        feature = _delimited(b"\x0a", _delimited(b"\x0a", col[name].cast(_BIN)))
        features[name] = pc.if_else(pc.is_valid(col[name]), feature, _EMPTY)
    for name in INT_FIELDS:
        features[name] = _delimited(b"\x1a", _delimited(b"\x0a", _varints(col[name].to_numpy(zero_copy_only=False))))
    features["messages_role"] = pa.array([_constant(b"\x0a", _constant(b"\x0a", b"user", b"assistant"))] * n, _BIN)
    users = pa_join(USER_PREFIX.encode("utf-8"), col["question"].cast(_BIN))
    content = pa_join(_delimited(b"\x0a", users), _delimited(b"\x0a", col["answer"].cast(_BIN)))
    features["messages_content"] = _delimited(b"\x0a", content)
    boxes = col["gt_boxes"]
    row_offsets = boxes.offsets.to_numpy().astype(np.int64)
    inner = boxes.flatten()
    coords = inner.flatten().to_numpy(zero_copy_only=False)
    inner_offsets = inner.offsets.to_numpy().astype(np.int64)
    coord_offsets = inner_offsets[row_offsets - row_offsets[0]] - inner_offsets[0] if n else np.zeros(1, np.int64)
    packed = _joined(coord_offsets, _varints(coords))
    features["gt_boxes"] = _delimited(b"\x1a", _delimited(b"\x0a", packed, omit_empty=True))
    for name in STRLIST_FIELDS:
        features[name] = _delimited(b"\x0a", _bytes_list(col[name]))
    entries = [_delimited(b"\x0a", pa_join(_constant(b"\x0a", key.encode("utf-8")), _delimited(b"\x12", features[key])))
               for key in sorted(features, key=lambda k: k.encode("utf-8"))]
    return _delimited(b"\x0a", pa_join(*entries))


def encode_table(table) -> bytes:
    """A DIALOGUE_SCHEMA table -> the bytes of one TFRecord file, its rows framed in table order."""
    out = []
    for record in examples_of_table(table).to_pylist() if table.num_rows else []:
        length = struct.pack("<Q", len(record))
        out += [length, struct.pack("<I", masked_crc(length)), record, struct.pack("<I", masked_crc(record))]
    return b"".join(out)
