"""Classification: which categories an image holds (docs/rules.md sections 7 and 12)."""
from sarchat.transforms.answer_words import OK, UNPARSEABLE, find_categories
from sarchat.transforms.categories import CATEGORY_INDEX
from sarchat.transforms.tasks.task_spec import TaskSpec

SPEC = TaskSpec("classify", "", "Classification", columns=(("classify", "Class"),), min_templates=20)


def parse(text, box_format=None, width=None, height=None):
    """{'status', 'categories'}: the distinct categories named, canonical order; unparseable when no
    category word at all (ship, ships, aircraft, aircrafts, car, ... harbour)."""
    cats = sorted(set(find_categories(text)), key=CATEGORY_INDEX.__getitem__)
    return {"status": OK if cats else UNPARSEABLE, "categories": cats}
