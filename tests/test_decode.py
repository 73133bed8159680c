"""transforms/decode.py, the one decoding layer, case by case (pure, no Beam). The command line's
behaviour on the same inputs is tests/test_trust.py's."""
import gzip
import io

import pytest

from sarchat.transforms import decode
from sarchat.transforms.errors import InputError

PROBLEMS = [
    ('"\\ud800"', "lone_surrogate"),
    ('{"a\\udfff": 1}', "lone_surrogate"),
    ("[" * 100000 + "]" * 100000, "too_deeply_nested"),
    ("1e400", "number_out_of_range"),
    ("{", "malformed_json"),
    (b"\xff", "not_utf8"),
    ("\ufeff{}", "malformed_json"),
]


@pytest.mark.parametrize("text, reason", PROBLEMS, ids=[r for _, r in PROBLEMS])
def test_a_bad_text_is_a_problem_with_its_reason(text, reason):
    with pytest.raises(decode.Problem) as e:
        decode.loads(text)
    assert e.value.reason == reason
    assert "a.json" in str(e.value.as_input_error("a.json"))


def test_numbers_and_predictions():
    assert decode.loads("1e400", finite=False) == float("inf")
    assert decode.prediction_text("ship") == "ship" and decode.prediction_text(None) is None
    for bad in (["a"], {"a": 1}, "\ud800"):
        with pytest.raises(decode.Problem):
            decode.prediction_text(bad)


def test_escape_keeps_the_text_and_makes_it_writable():
    out = decode.escape_record({"prediction": "a\ud800b", "n": [1, "c"]})
    assert out == {"prediction": "a\\ud800b", "n": [1, "c"]}
    out["prediction"].encode("utf-8")


def test_gzip_cut_short_or_not_gzip_is_never_a_shorter_text():
    data = gzip.compress(b"line\n" * 1000)
    assert decode.gunzip(data, "p.gz") == b"line\n" * 1000
    with pytest.raises(InputError, match="p.gz is cut short"):
        decode.gunzip(data[: len(data) // 2], "p.gz")
    with pytest.raises(InputError, match="p.gz is not a valid gzip file"):
        decode.gunzip(b"plain text", "p.gz")
    lines = decode.GzipLines(io.BytesIO(data[: len(data) // 2]), "p.gz")
    with pytest.raises(InputError, match="cut short"):
        while lines.readline():
            pass


def test_tables_long_fields_are_read_and_torn_quotes_refused():
    long = "x" * 300000
    assert decode.table_rows(f"a\tb\n1\t{long}\n", "\t", "t.tsv")[1][1] == long
    with pytest.raises(InputError, match="t.tsv is not a well-formed TSV"):
        decode.table_rows('a\tb\n1\t"torn\n', "\t", "t.tsv")


def test_a_folder_is_not_a_file(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        decode.check_is_file(str(tmp_path))
