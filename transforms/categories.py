"""The six SARDet-100K categories: canonical order, matching by name, plurals."""

# Canonical order (SARDet-100K ids 0..5). Answers list categories in this order.
CATEGORIES = ("ship", "aircraft", "car", "tank", "bridge", "harbor")
CATEGORY_INDEX = {name: i for i, name in enumerate(CATEGORIES)}

PLURALS = {name: name if name == "aircraft" else name + "s" for name in CATEGORIES}

# Words a parser maps back to a category: singular, plural, and the common "aircrafts".
CATEGORY_WORDS = {word: name for name in CATEGORIES for word in (name, PLURALS[name])}
CATEGORY_WORDS["aircrafts"] = "aircraft"


def canonical_category(name):
    """Map a dataset's category name to ours, case-insensitively; None when unknown."""
    if not isinstance(name, str):
        return None
    return CATEGORY_WORDS.get(name.strip().lower())


def plural(category: str, n: int = 2) -> str:
    return category if n == 1 else PLURALS[category]


def article(word: str) -> str:
    """'a' or 'an' for the word that follows (we only need it for our own vocabulary)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def canonical_sort(categories):
    """Unique categories in canonical order."""
    return sorted(set(categories), key=CATEGORY_INDEX.__getitem__)


def join_words(words) -> str:
    """'ship', 'ship and car', 'ship, car and tank'."""
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]
