"""A task is one module of sarchat/transforms/tasks/, registered in its MODULES: every module
implements the whole protocol, and the values derived from the registry agree with it."""
import inspect

import pytest

from sarchat import templates
from sarchat.transforms import adapters, tasks
from sarchat.transforms.score import metrics


@pytest.mark.parametrize("module", tasks.MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_every_task_module_implements_the_whole_protocol(module):
    assert isinstance(module.SPEC, tasks.TaskSpec)
    assert "question" in module.TEMPLATE_FIELDS and all(len(v) == 2 for v in module.TEMPLATE_FIELDS.values())
    assert module.__name__.endswith("." + module.SPEC.id)
    missing = [name for name in tasks.PROTOCOL if not callable(getattr(module, name, None))]
    assert not missing, f"{module.__name__} lacks {missing}"


@pytest.mark.parametrize("name", tasks.PROTOCOL)
def test_every_task_module_takes_the_same_arguments(name):
    """The callers (score_columns, the blind prior, the dialogue builder...) call a protocol function
    of any task alike: every module's takes the same parameters."""
    params = {m.SPEC.id: tuple(inspect.signature(getattr(m, name)).parameters) for m in tasks.MODULES}
    assert len(set(params.values())) == 1, params


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
        tasks.task("caption")
