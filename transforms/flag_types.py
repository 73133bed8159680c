"""The command line's number types, shared by every subcommand (generate, score, stats and the
inference stage alike): argparse type functions that check a flag's value when it is parsed. One
wording for every refusal: `expected <what>, got '<value>'`, to which argparse adds the flag's name
(`argument --batch-size: expected a positive integer, got '0'`)."""
import argparse


def number(kind, ok, what, name):
    """The type function `name`: `kind(text)` when `ok` accepts it (NaN fails every comparison)."""
    def parse(text):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = name
    return parse


positive_int = number(int, lambda v: v > 0, "a positive integer", "positive_int")
non_negative_int = number(int, lambda v: v >= 0, "a non-negative integer", "non_negative_int")
positive_float = number(float, lambda v: 0 < v < float("inf"), "a positive number", "positive_float")
non_negative_float = number(float, lambda v: 0 <= v < float("inf"), "a non-negative number", "non_negative_float")
unit_float = number(float, lambda v: 0 < v <= 1, "a number in (0, 1]", "unit_float")
fraction = number(float, lambda v: 0 <= v <= 1, "a number in 0..1", "fraction")


def at_least(low: int):
    return number(int, lambda v: v >= low, f"an integer of at least {low}", f"int_at_least_{low}")


def int_between(low: int, high: int):
    """Type function for an integer in low..high (both included)."""
    return number(int, lambda v: low <= v <= high, f"an integer in {low}..{high}", f"int_{low}_to_{high}")


def positive_int_or_auto(text):
    """A positive integer, or None for "auto" (the stage picks the number)."""
    if str(text).strip().lower() == "auto":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}") from None
