"""The blind baseline's fast fit (only the columns it uses, identify counted column-wise) gives the
prior and the predictions of the reference fit over whole row dicts, on the synthetic default
dataset (the demo's). The digest pins the prior the reference fit gave before the fast path
existed, so neither side can drift unnoticed."""
import glob
import hashlib
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sarchat.beam_pipelines import generate
from sarchat.inference.baselines import BlindPrior

# sha256 of json.dumps(BlindPrior(use_question_box=False).fit(train rows).to_dict(), sort_keys=True) on
# the synthetic default, computed with the row-dict fit before the fast path was added
PINNED_PRIOR = "ace3948d67f7597a67ef036736634e56fd75348d14f98ef5c2a4419767880584"


def _prior_digest(blind):
    return hashlib.sha256(json.dumps(blind.to_dict(), sort_keys=True).encode()).hexdigest()


@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory, default_synth):
    out = str(tmp_path_factory.mktemp("blind") / "out")
    assert generate.run(["--input", default_synth, "--output", out, "--formats", "parquet"]) in (0, None)
    return out


def _split_rows(out, split):
    files = sorted(glob.glob(os.path.join(out, "parquet", split, "*.parquet")))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()


def test_reference_fit_is_pinned(demo_dataset):
    blind = BlindPrior().fit(_split_rows(demo_dataset, "train"))
    if os.environ.get("SARCHAT_PRINT_GOLDEN"):
        print(_prior_digest(blind))
    assert _prior_digest(blind) == PINNED_PRIOR


def _split_table(out, split, columns=None):
    files = sorted(glob.glob(os.path.join(out, "parquet", split, "*.parquet")))
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])


def test_fast_fit_equals_reference_fit_and_predictions(demo_dataset):
    from sarchat.inference.baselines import FIT_COLUMNS

    reference = BlindPrior().fit(_split_rows(demo_dataset, "train"))
    table = _split_table(demo_dataset, "train", list(FIT_COLUMNS))
    whole = BlindPrior().fit_tables([table])
    # small batches: counts accumulate across batches, some batches lack a task
    batched = BlindPrior().fit_tables(table.to_batches(max_chunksize=37))
    assert _prior_digest(whole) == _prior_digest(batched) == _prior_digest(reference) == PINNED_PRIOR
    test_rows = _split_rows(demo_dataset, "test")
    assert len(test_rows) > 400
    for use_box in (False, True):
        ref = BlindPrior(use_question_box=use_box).fit(_split_rows(demo_dataset, "train"))
        fast = BlindPrior(use_question_box=use_box).fit_tables(table.to_batches(max_chunksize=500))
        assert [fast.predict(r) for r in test_rows] == [ref.predict(r) for r in test_rows]


def test_fast_identify_counts_follow_the_row_rules():
    # null and empty lists, an empty size word, a null first category: what add_row skips or counts
    rows = [
        {"task": "identify", "gt_categories": ["ship"], "gt_sizes": ["small"], "gt_cells": ["top left"], "gt_shapes": []},
        {"task": "identify", "gt_categories": ["ship"], "gt_sizes": [""], "gt_cells": ["top left", "top left"],
         "gt_shapes": ["wide"]},
        {"task": "identify", "gt_categories": [], "gt_sizes": ["large"], "gt_cells": None, "gt_shapes": None},
        {"task": "identify", "gt_categories": None, "gt_sizes": None, "gt_cells": ["bottom right"], "gt_shapes": ["tall"]},
        {"task": "identify", "gt_categories": ["tank", "ship"], "gt_sizes": ["large", "small"], "gt_cells": [],
         "gt_shapes": ["tall"]},
        {"task": "identify", "gt_categories": ["tank"], "gt_sizes": ["large"], "gt_cells": ["bottom right"],
         "gt_shapes": ["tall"]},
        {"task": "classify", "gt_categories": ["car", "tank"]},
        {"task": None, "gt_categories": ["car"]},
    ]
    columns = {"task": pa.string(), "gt_categories": pa.list_(pa.string()), "gt_sizes": pa.list_(pa.string()),
               "gt_cells": pa.list_(pa.string()), "gt_shapes": pa.list_(pa.string())}
    table = pa.table({k: [r.get(k) for r in rows] for k in columns}, schema=pa.schema(list(columns.items())))
    ref, fast = BlindPrior().fit(rows), BlindPrior().fit_tables([table])
    assert fast.to_dict() == ref.to_dict()
    assert ref.priors["identify"]["size"] == "large" and ref.priors["identify"]["cell"] == "top left"
    assert ref.priors["identify"]["category_by_size"] == {"small": "ship", "large": "tank"}
