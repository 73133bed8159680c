"""The one reader of the test rows the scorer and its report use. Pure code, no Beam transforms.

`iter_test_tables` gives the scorer's columns of one test Parquet shard, batch by batch, keeping
only the rows of the split; `read_shown_rows` the display columns (question, answer, image path) of
the few samples the report shows.
"""
import pyarrow as pa
import pyarrow.compute as pc

from sarchat.transforms.fileio import open_parquet

# Test-row fields the scorer reads (the rest of DIALOGUE_SCHEMA is not needed).
DIALOGUE_COLUMNS = ("id", "split", "task", "subset", "width", "height", "gt_boxes", "gt_categories",
                    "gt_cells", "gt_sizes", "gt_shapes", "gt_relations", "gt_count")
# ... and those the report's samples section shows beside them.
SHOWN_ROW_COLUMNS = DIALOGUE_COLUMNS[:4] + ("image_path",) + DIALOGUE_COLUMNS[4:6] + ("question", "answer") \
    + DIALOGUE_COLUMNS[6:]


def _of_split(table, split, names):
    if "split" not in names:
        return table
    return table.filter(pc.fill_null(pc.equal(table.column("split"), split), False))


def iter_test_tables(path, split, columns=DIALOGUE_COLUMNS, batch_size=65536):
    """(table of the split's rows, rows of other splits skipped) per record batch of a shard."""
    pf = open_parquet(path)
    names = set(pf.schema_arrow.names)
    cols = [c for c in columns if c in names]
    for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
        table = pa.Table.from_batches([batch])
        kept = _of_split(table, split, names)
        yield kept, table.num_rows - kept.num_rows


def read_shown_rows(path, split, ids):
    """[test row dict] of the shard's rows of the split whose id is in `ids` (display columns too).
    Only the row groups holding one of the ids are read beyond their `id` column."""
    if not ids:
        return []
    wanted = pa.array(sorted(ids), type=pa.string())
    pf = open_parquet(path)
    names = set(pf.schema_arrow.names)
    cols = [c for c in SHOWN_ROW_COLUMNS if c in names]
    out = []
    for g in range(pf.metadata.num_row_groups):
        keys = pc.cast(pf.read_row_group(g, columns=["id"]).column("id"), pa.string())
        if not pc.any(pc.fill_null(pc.is_in(keys, value_set=wanted), False)).as_py():
            continue
        table = _of_split(pf.read_row_group(g, columns=cols), split, names)
        hit = pc.fill_null(pc.is_in(pc.cast(table.column("id"), pa.string()), value_set=wanted), False)
        out += table.filter(hit).to_pylist()
    return out
