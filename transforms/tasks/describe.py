"""Fine-grained description: a '<size> <category> <position>' phrase per kept box (docs/rules.md sections 5, 7 and 12)."""
from sarchat.transforms.answer_words import OK, UNPARSEABLE, parse_description
from sarchat.transforms.tasks.task_spec import TaskSpec

SPEC = TaskSpec("describe", "", "Fine-grained description", columns=(("describe", "Descript"),), min_templates=40)


def parse(text, box_format=None, width=None, height=None):
    """{'status', 'triples'}: (size, category, cell) per phrase (answer_words.parse_description);
    unparseable when no "<size> <category>" phrase (e.g. "small ship", "medium-sized tanks")."""
    triples = parse_description(text)
    return {"status": OK if triples else UNPARSEABLE, "triples": triples}
