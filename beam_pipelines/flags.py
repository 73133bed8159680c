"""The command line's parser and flag types, shared by every `sarchat` subcommand (no Beam import).

- `ArgumentParser`: argparse whose parse errors raise UsageError (so `sarchat` prints them as its
  one error line and exits 2) and which never guesses an abbreviated flag (`--image` is not silently
  `--images-per-shard`; an unknown flag must reach the Beam check in beam_options.py whole).
- Type functions: a flag's value is checked when it is parsed, with a message naming the value;
  argparse adds the flag's name (`argument --images-per-shard: must be a positive integer, got 0`).
- `output_folder(flag)`: the one check of an output location (fileio.check_output_location).
"""
import argparse

from sarchat.transforms import fileio
from sarchat.transforms.errors import UsageError


class ArgumentParser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _int(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


# A seed is any non-negative integer: negative seeds are almost always a typo, and refusing them
# keeps one spelling per seed (Python would accept -0 and 0 as the same seed).
seed = non_negative_int


def at_least(low: int):
    """Type function for an integer of at least `low`."""
    def check(text) -> int:
        value = _int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text!r}")
        return value

    check.__name__ = f"int_at_least_{low}"
    return check


def int_between(low: int, high: int):
    """Type function for an integer in low..high (both included)."""
    def check(text) -> int:
        value = _int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {text!r}")
        return value

    check.__name__ = f"int_{low}_to_{high}"
    return check


def identify_variants(text) -> int:
    """identify questions per box: 1 .. the size of the identify template bank."""
    from sarchat.templates import load_all

    return int_between(1, len(load_all()["identify"]["templates"]))(text)


def output_folder(flag="--output"):
    """Type function for an output location: not a file, not under a file (fileio.check_output_location).
    Raises OutputError (exit 1) rather than a parse error: the flag is well-formed, the disk disagrees."""
    def check(text):
        return fileio.check_output_location(text, flag)

    check.__name__ = "output_folder"
    return check


def option_strings(parser) -> list:
    """Every flag a parser defines (--input, --image_root, -h, ...)."""
    return sorted(s for action in parser._actions for s in action.option_strings)
