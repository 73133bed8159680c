"""The per-row TFRecord definition the library's column-wise encoder (transforms/generate/tfrecord.py)
is checked against: a tf.train.Example built with the protobuf runtime from a descriptor equivalent
to TensorFlow's example.proto / feature.proto, TFRecord's framing, and a reader that checks both
CRCs. Test code only: the wheel writes TFRecord files with `tfrecord.encode_table`."""
import functools
import struct

from sarchat.transforms.generate.tfrecord import INT_FIELDS, STR_FIELDS, STRLIST_FIELDS, masked_crc
from sarchat.transforms.schema import USER_PREFIX


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


def frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", masked_crc(length)) + record + struct.pack("<I", masked_crc(record))


def read_records(data: bytes):
    """Yield the records of a TFRecord byte string, checking both CRCs."""
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        if struct.unpack("<I", data[pos + 8:pos + 12])[0] != masked_crc(header):
            raise ValueError(f"TFRecord length CRC mismatch at offset {pos}")
        record = data[pos + 12:pos + 12 + length]
        if struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] != masked_crc(record):
            raise ValueError(f"TFRecord data CRC mismatch at offset {pos}")
        yield record
        pos += 16 + length


def example_of_row(row, _example=None) -> bytes:
    """A dialogue row (a dict) -> serialized tf.train.Example with the fields of docs/rules.md section 8."""
    ex = (_example or example_class())()
    fm = ex.features.feature
    for name in STR_FIELDS:
        v = row[name]
        values = fm[name].bytes_list.value
        if v is not None:
            values.append(v.encode("utf-8"))
    for name in INT_FIELDS:
        v = row[name]
        values = fm[name].int64_list.value
        if v is not None:
            values.append(v)
    fm["messages_role"].bytes_list.value.extend((b"user", b"assistant"))
    fm["messages_content"].bytes_list.value.extend(
        ((USER_PREFIX + row["question"]).encode("utf-8"), row["answer"].encode("utf-8")))
    fm["gt_boxes"].int64_list.value.extend([c for box in row["gt_boxes"] for c in box])
    for name in STRLIST_FIELDS:
        fm[name].bytes_list.value.extend([s.encode("utf-8") for s in row[name]])
    return ex.SerializeToString(deterministic=True)


def encode_rows(rows) -> bytes:
    """Rows -> the bytes of one TFRecord file: one protobuf Example per row, framed."""
    cls = example_class()
    return b"".join([frame(example_of_row(r, cls)) for r in rows])
