"""TFRecord files of tf.train.Example records, written without TensorFlow.

The Example messages are built with the protobuf runtime (a dependency of Beam, fast upb backend)
from a descriptor equivalent to TensorFlow's example.proto / feature.proto, declared below, so the
bytes are what TensorFlow itself would write. Framing is TFRecord's: uint64 length, masked CRC32C
of the length, data, masked CRC32C of the data. Field mapping of a dialogue row:
  strings            -> bytes_list (a null subset -> an empty list)
  ints               -> int64_list
  list<string>       -> bytes_list
  gt_boxes           -> int64_list, flattened x1,y1,x2,y2 per box (reshape to [-1, 4])
  messages           -> messages_role and messages_content, two parallel bytes_lists
Read back with tf.data.TFRecordDataset + tf.io.parse_single_example (VarLenFeature per field),
or with `read_records` below.
"""
import functools
import struct

import google_crc32c
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sarchat.transforms.schema import USER_PREFIX

_MASK_DELTA = 0xA282EAD8


@functools.lru_cache(maxsize=None)
def example_class():
    """The tensorflow.Example message class, built from a descriptor in a private pool."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    T = descriptor_pb2.FieldDescriptorProto
    f = descriptor_pb2.FileDescriptorProto(name="sarchat/tf_example.proto", package="tensorflow", syntax="proto3")

    def message(name, fields):
        m = f.message_type.add(name=name)
        for number, (fname, ftype, label, type_name) in enumerate(fields, 1):
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = type_name
        return m

    message("BytesList", [("value", T.TYPE_BYTES, T.LABEL_REPEATED, None)])
    message("FloatList", [("value", T.TYPE_FLOAT, T.LABEL_REPEATED, None)])
    message("Int64List", [("value", T.TYPE_INT64, T.LABEL_REPEATED, None)])
    feature = message("Feature", [
        ("bytes_list", T.TYPE_MESSAGE, T.LABEL_OPTIONAL, ".tensorflow.BytesList"),
        ("float_list", T.TYPE_MESSAGE, T.LABEL_OPTIONAL, ".tensorflow.FloatList"),
        ("int64_list", T.TYPE_MESSAGE, T.LABEL_OPTIONAL, ".tensorflow.Int64List"),
    ])
    feature.oneof_decl.add(name="kind")
    for fd in feature.field:
        fd.oneof_index = 0
    features = f.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=T.TYPE_MESSAGE, label=T.LABEL_OPTIONAL, type_name=".tensorflow.Feature")
    features.field.add(name="feature", number=1, type=T.TYPE_MESSAGE, label=T.LABEL_REPEATED,
                       type_name=".tensorflow.Features.FeatureEntry")
    message("Example", [("features", T.TYPE_MESSAGE, T.LABEL_OPTIONAL, ".tensorflow.Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", _masked_crc(length)) + record + struct.pack("<I", _masked_crc(record))


def read_records(data: bytes):
    """Yield the records of a TFRecord byte string, checking both CRCs."""
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        if struct.unpack("<I", data[pos + 8:pos + 12])[0] != _masked_crc(header):
            raise ValueError(f"TFRecord length CRC mismatch at offset {pos}")
        record = data[pos + 12:pos + 12 + length]
        if struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] != _masked_crc(record):
            raise ValueError(f"TFRecord data CRC mismatch at offset {pos}")
        yield record
        pos += 16 + length


_STR = ("id", "split", "task", "subset", "image_path", "question", "answer", "template_id")
_INT = ("image_id", "width", "height", "gt_count")
_STRLIST = ("gt_categories", "gt_cells", "gt_sizes", "gt_shapes", "gt_relations")


def example_of_row(row, _example=None) -> bytes:
    """A dialogue row (a dict) -> serialized tf.train.Example with the fields of docs/rules.md section 8."""
    ex = (_example or example_class())()
    fm = ex.features.feature
    for name in _STR:
        v = row[name]
        values = fm[name].bytes_list.value
        if v is not None:
            values.append(v.encode("utf-8"))
    for name in _INT:
        v = row[name]
        values = fm[name].int64_list.value
        if v is not None:
            values.append(v)
    fm["messages_role"].bytes_list.value.extend((b"user", b"assistant"))
    fm["messages_content"].bytes_list.value.extend(
        ((USER_PREFIX + row["question"]).encode("utf-8"), row["answer"].encode("utf-8")))
    fm["gt_boxes"].int64_list.value.extend([c for box in row["gt_boxes"] for c in box])
    for name in _STRLIST:
        fm[name].bytes_list.value.extend([s.encode("utf-8") for s in row[name]])
    return ex.SerializeToString(deterministic=True)


def encode_rows(rows) -> bytes:
    """Rows -> the bytes of one TFRecord file."""
    cls = example_class()
    return b"".join([frame(example_of_row(r, cls)) for r in rows])


# --- The same bytes from an Arrow table, column by column -----------------------------------------
# example_of_row above builds one protobuf object per row (~15 us each, most of an all-formats run).
# Here each Example is assembled from its wire format directly, per column, with Arrow's element-wise
# binary joins: a tf.train.Example is Features{feature: map<string, Feature>}, which deterministic
# serialization writes as map entries sorted by key, each `0x0a len {0x0a len key, 0x12 len Feature}`,
# a Feature being `0x0a len BytesList` or `0x1a len Int64List` (packed varints). Equality with
# example_of_row is pinned in tests/test_dialogue_builder.py; the independent decoder in
# tests/test_generate_pipeline.py and the TensorFlow check read the result.

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
    return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _lengths(array):

    return np.asarray(pc.binary_length(array).fill_null(0), dtype=np.int64)


def _delimited(tag: bytes, payload, omit_empty=False):
    """tag + varint(len) + payload per row (payload a binary array); nothing for an empty payload
    when omit_empty (a packed repeated field with no values is not written)."""

    lengths = _lengths(payload)
    out = pa_join(tag, _varints(lengths), payload)
    if omit_empty:
        out = pc.if_else(pa.array(lengths > 0), out, pa.scalar(b"", pa.large_binary()))
    return out


def _bin(array):

    return array.cast(pa.large_binary())


def _bytes_list(values):
    """BytesList payload per row from a list<string> array."""

    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    elements = _delimited(b"\x0a", _bin(values.flatten()))
    lists = pa.LargeListArray.from_arrays(pa.array(values.offsets.to_numpy().astype("int64") - values.offsets[0].as_py()), elements)
    return pc.binary_join(lists, pa.scalar(b"", pa.large_binary()))


def _entry(key: str, feature):
    body = pa_join(_key_prefix(key), _varints(_lengths(feature)), feature)
    return _delimited(b"\x0a", body)


def _key_prefix(key):
    k = key.encode("utf-8")
    return b"\x0a" + _varint_bytes(len(k)) + k + b"\x12"


def _varint_bytes(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pa_join(*parts):
    """Element-wise concatenation of large_binary arrays and bytes constants."""
    parts = [pa.scalar(p, pa.large_binary()) if isinstance(p, bytes) else p for p in parts]
    return pc.binary_join_element_wise(*parts, pa.scalar(b"", pa.large_binary()))


def examples_of_table(table):
    """A DIALOGUE_SCHEMA table -> large_binary array of serialized tf.train.Example, one per row,
    byte-identical to example_of_row."""

    n = table.num_rows
    col = {name: table.column(name).combine_chunks() for name in table.column_names}
    features = {}
    for name in _STR:  # a null (subset) is an empty Feature: example_of_row never sets its bytes_list
        feature = _delimited(b"\x0a", _delimited(b"\x0a", _bin(col[name])))
        features[name] = pc.if_else(pc.is_valid(col[name]), feature, pa.scalar(b"", pa.large_binary()))
    for name in _INT:
        features[name] = _delimited(b"\x1a", _delimited(b"\x0a", _varints(col[name].to_numpy(zero_copy_only=False))))
    role = b"".join(b"\x0a" + _varint_bytes(len(r)) + r for r in (b"user", b"assistant"))
    features["messages_role"] = pa.array([b"\x0a" + _varint_bytes(len(role)) + role] * n, pa.large_binary())
    users = pa_join(USER_PREFIX.encode("utf-8"), _bin(col["question"]))
    content = pa_join(_delimited(b"\x0a", users), _delimited(b"\x0a", _bin(col["answer"])))
    features["messages_content"] = _delimited(b"\x0a", content)
    boxes = col["gt_boxes"]
    row_offsets = boxes.offsets.to_numpy().astype(np.int64)
    inner = boxes.flatten()
    coords = inner.flatten().to_numpy(zero_copy_only=False)
    inner_offsets = inner.offsets.to_numpy().astype(np.int64)
    coord_offsets = inner_offsets[row_offsets - row_offsets[0]] - inner_offsets[0] if n else np.zeros(1, np.int64)
    packed = pc.binary_join(pa.LargeListArray.from_arrays(pa.array(coord_offsets), _varints(coords)),
                            pa.scalar(b"", pa.large_binary()))
    features["gt_boxes"] = _delimited(b"\x1a", _delimited(b"\x0a", packed, omit_empty=True))
    for name in _STRLIST:
        features[name] = _delimited(b"\x0a", _bytes_list(col[name]))
    entries = [_entry(key, features[key]) for key in sorted(features, key=lambda k: k.encode("utf-8"))]
    return _delimited(b"\x0a", pa_join(*entries))


def encode_table(table) -> bytes:
    """A DIALOGUE_SCHEMA table -> the bytes of one TFRecord file (encode_rows of its rows)."""

    if table.num_rows == 0:
        return b""
    examples = examples_of_table(table)
    lengths = _lengths(examples)
    length_bytes = lengths.astype("<u8").tobytes()
    crc_of_length = {}
    headers = bytearray()
    footers = []
    for i, record in enumerate(examples.to_pylist()):
        length = length_bytes[8 * i:8 * i + 8]
        crc = crc_of_length.get(length)
        if crc is None:
            crc = crc_of_length[length] = struct.pack("<I", _masked_crc(length))
        headers += length + crc
        footers.append(_masked_crc(record))
    header = pa.Array.from_buffers(pa.large_binary(), len(lengths),
                                   [None, pa.py_buffer(np.arange(0, 12 * len(lengths) + 1, 12, dtype=np.int64)),
                                    pa.py_buffer(bytes(headers))])
    footer = pa.Array.from_buffers(pa.large_binary(), len(lengths),
                                   [None, pa.py_buffer(np.arange(0, 4 * len(lengths) + 1, 4, dtype=np.int64)),
                                    pa.py_buffer(np.array(footers, dtype="<u4").tobytes())])
    return concat_binary(pa_join(header, examples, footer))


def concat_binary(array) -> bytes:
    """The elements of a binary/string array, concatenated (a slice of its data buffer)."""

    if len(array) == 0:
        return b""
    array = array.cast(pa.large_binary()) if array.type not in (pa.large_binary(), pa.large_string()) else array
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset:array.offset + len(array) + 1]
    data = array.buffers()[2]
    return data[int(offsets[0]):int(offsets[-1])].to_pybytes() if data is not None else b""
