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

from sarchat.transforms.generate.dialogues import DIALOGUE_ROW_FIELDS

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
_IDX = {name: i for i, name in enumerate(DIALOGUE_ROW_FIELDS)}


def example_of_row(row, _example=None) -> bytes:
    """A dialogue row tuple -> serialized tf.train.Example with the fields of SPEC section 4."""
    from sarchat.transforms.generate.records import USER_PREFIX

    ex = (_example or example_class())()
    fm = ex.features.feature
    for name in _STR:
        v = row[_IDX[name]]
        values = fm[name].bytes_list.value
        if v is not None:
            values.append(v.encode("utf-8"))
    for name in _INT:
        v = row[_IDX[name]]
        values = fm[name].int64_list.value
        if v is not None:
            values.append(v)
    fm["messages_role"].bytes_list.value.extend((b"user", b"assistant"))
    fm["messages_content"].bytes_list.value.extend(
        ((USER_PREFIX + row[_IDX["question"]]).encode("utf-8"), row[_IDX["answer"]].encode("utf-8")))
    fm["gt_boxes"].int64_list.value.extend([c for box in row[_IDX["gt_boxes"]] for c in box])
    for name in _STRLIST:
        fm[name].bytes_list.value.extend([s.encode("utf-8") for s in row[_IDX[name]]])
    return ex.SerializeToString(deterministic=True)


def encode_rows(rows) -> bytes:
    """Rows -> the bytes of one TFRecord file."""
    cls = example_class()
    return b"".join([frame(example_of_row(r, cls)) for r in rows])
