"""TFRecord files of tf.train.Example records, written without TensorFlow.

The Example protobuf is small enough to encode by hand (field numbers from TensorFlow's
example.proto / feature.proto); framing is TFRecord's: uint64 length, masked CRC32C of the
length, data, masked CRC32C of the data. Field mapping of a dialogue row:
  strings            -> bytes_list (a null subset -> an empty list)
  ints               -> int64_list
  list<string>       -> bytes_list
  gt_boxes           -> int64_list, flattened x1,y1,x2,y2 per box (reshape to [-1, 4])
  messages           -> messages_role and messages_content, two parallel bytes_lists
"""
import struct

import google_crc32c

from transforms.dialogues import DIALOGUE_ROW_FIELDS

_MASK_DELTA = 0xA282EAD8


def _varint(v: int) -> bytes:
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _len_field(field_number: int, payload: bytes) -> bytes:
    return _varint((field_number << 3) | 2) + _varint(len(payload)) + payload


def bytes_feature(values) -> bytes:
    inner = b"".join(_len_field(1, v) for v in values)
    return _len_field(1, inner)  # Feature.bytes_list = 1


def int64_feature(values) -> bytes:
    packed = b"".join(_varint(int(v)) for v in values)
    inner = _len_field(1, packed) if values else b""
    return _len_field(3, inner)  # Feature.int64_list = 3


def encode_example(features) -> bytes:
    """[(name, encoded Feature bytes)] -> serialized tf.train.Example (map entries in given order)."""
    entries = b"".join(_len_field(1, _len_field(1, name.encode()) + _len_field(2, feat)) for name, feat in features)
    return _len_field(1, entries)  # Example.features = 1 -> Features.feature (map) = 1


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


def example_of_row(row) -> bytes:
    """A dialogue row tuple -> serialized tf.train.Example with the fields of SPEC section 4."""
    from transforms.records import USER_PREFIX

    feats = []
    for name in _STR:
        v = row[_IDX[name]]
        feats.append((name, bytes_feature([] if v is None else [v.encode("utf-8")])))
    for name in _INT:
        v = row[_IDX[name]]
        feats.append((name, int64_feature([] if v is None else [v])))
    q, a = row[_IDX["question"]], row[_IDX["answer"]]
    feats.append(("messages_role", bytes_feature([b"user", b"assistant"])))
    feats.append(("messages_content", bytes_feature([(USER_PREFIX + q).encode("utf-8"), a.encode("utf-8")])))
    feats.append(("gt_boxes", int64_feature([c for box in row[_IDX["gt_boxes"]] for c in box])))
    for name in _STRLIST:
        feats.append((name, bytes_feature([s.encode("utf-8") for s in row[_IDX[name]]])))
    return encode_example(feats)
