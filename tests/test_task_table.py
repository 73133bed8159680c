"""A task is declared once (sarchat/transforms/tasks.py); every per-task table covers exactly the
declared tasks, and the values derived from the table agree with it."""
import pytest

from sarchat import templates
from sarchat.inference import baselines, cfar
from sarchat.report import sample_sections
from sarchat.transforms import adapters, schema, tasks
from sarchat.transforms.score import metrics, parsing, sample_records

TABLES = {
    "parsing.PARSERS": parsing.PARSERS,
    "metrics.SCORERS": metrics.SCORERS,
    "metrics.MISS_RULES": metrics.MISS_RULES,
    "metrics.SAMPLE_COLUMN_RULES": metrics.SAMPLE_COLUMN_RULES,
    "sample_records.PRED_LABELS": sample_records.PRED_LABELS,
    "sample_sections.MARKS": sample_sections.MARKS,
    "baselines.ANSWER_METHODS": baselines.ANSWER_METHODS,
    "cfar.ANSWERS": cfar.ANSWERS,
    "templates.MIN_TEMPLATES": templates.MIN_TEMPLATES,
    "schema.TASK_TAGS": schema.TASK_TAGS,
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_covers_exactly_the_declared_tasks(name):
    assert set(TABLES[name]) == set(tasks.TASKS), name


def test_blind_answers_exist_for_every_task():
    for task, method in baselines.ANSWER_METHODS.items():
        assert callable(getattr(baselines.BlindPrior, "_answer_" + method)), task


def test_derived_values_agree_with_the_specs():
    assert tasks.TASKS == ("classify", "describe", "count", "grounding", "identify", "refer")
    assert metrics.TASK_COLUMNS == {s.id: s.column_ids for s in tasks.TASK_SPECS}
    assert set(metrics.COLUMNS) == {c for s in tasks.TASK_SPECS for c in s.column_ids}
    assert len(metrics.COLUMNS) == 14  # the paper's Table 3
    assert set(tasks.SUBSET_TASKS) == {"grounding", "identify", "refer"}
    assert tasks.ANSWER_BOX_TASKS == ("count", "grounding", "refer")
    assert set(adapters.BOX_TASKS) == {"count", "grounding", "identify", "refer"}
    for spec in tasks.TASK_SPECS:
        bank = templates.load_bank(spec.id)
        assert len(bank["templates"]) >= spec.min_templates, spec.id
        for c in spec.column_ids:
            assert c == spec.id or c.startswith(spec.id + "."), c


def test_an_unknown_task_is_named():
    with pytest.raises(KeyError, match="unknown task 'caption'"):
        tasks.spec("caption")
