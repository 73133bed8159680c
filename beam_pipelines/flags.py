"""The command line's parser and flag types, shared by every `sarchat` subcommand (no Beam import).

- `ArgumentParser`: argparse whose parse errors raise UsageError (so `sarchat` prints them as its
  one error line and exits 2) and which never guesses an abbreviated flag (`--image` is not silently
  `--images-per-shard`; an unknown flag must reach the Beam check in beam_options.py whole).
- Type functions: a flag's value is checked when it is parsed, with a message naming the value;
  argparse adds the flag's name (`argument --images-per-shard: expected a positive integer, got '0'`);
  they live in transforms/flag_types.py, which the inference stage shares.
- `output_folder(flag)`: the one check of an output location (fileio.check_output_location).
- `parse_config(parser, argv, cls)`: the one way a subcommand's command line becomes its frozen
  config (the dataclass `cls`), which the subcommand's stage function takes.
"""
import argparse
import dataclasses
import sys

from sarchat.transforms import fileio
from sarchat.transforms.flag_types import (at_least, fraction, int_between, non_negative_int, positive_int,  # noqa: F401
                                           positive_int_or_auto)
from sarchat.transforms.errors import UsageError


class ArgumentParser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._renamed = []       # (old spelling, new flag, dest)
        self._required = []      # (action, flag): required, checked after the old spellings are resolved

    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def add_renamed(self, old, new, *, positional=False, **kwargs):
        """`old` (a flag, or with positional=True a positional argument named `old`) is the previous
        spelling of the flag `new` (added before): still accepted in this release, with a one-line
        note on stderr; giving both is a UsageError. Listed in --help as deprecated."""
        target = next(a for a in self._actions if new in a.option_strings)
        dest = f"_renamed_{target.dest}_{len(self._renamed)}"
        text = f"deprecated: old spelling of {new} (removed in {RENAMED_UNTIL})"
        if positional:
            self.add_argument(dest, nargs="?", default=None, metavar=old, help=text, **kwargs)
        elif isinstance(target, argparse._StoreTrueAction):  # pylint: disable=protected-access
            self.add_argument(old, dest=dest, action="store_true", default=None, help=text)
        else:
            self.add_argument(old, dest=dest, default=None, type=target.type, metavar=target.metavar or old.lstrip("-").upper(),
                              nargs=target.nargs, help=text)
        self._renamed.append((old, new, dest, target.dest, tuple(target.option_strings)))

    def require(self, flag):
        """`flag` is required; its old spelling (add_renamed) counts. The action stays marked
        required (--help, the Flex Template check read it); argparse's own check is held off while
        parsing and done here after the old spellings are resolved."""
        action = next(a for a in self._actions if flag in a.option_strings)
        action.required = True
        self._required.append((action, flag))

    def parse_known_args(self, args=None, namespace=None):
        words = list(sys.argv[1:] if args is None else args)
        for action, _ in self._required:
            action.required = False
        try:
            args, rest = super().parse_known_args(words, namespace)
        finally:
            for action, _ in self._required:
                action.required = True
        for old, new, dest, new_dest, new_spellings in self._renamed:
            old_value = vars(args).pop(dest, None)
            if old_value is None:
                continue
            if any(w == n or w.startswith(n + "=") for w in words for n in new_spellings):
                raise UsageError(f"{new} and its old spelling {old} both given: give {new} only "
                                 f"(see `{self.prog} --help`)")
            setattr(args, new_dest, old_value)
            # one line on stderr (never stdout, which may be a result)
            shown = old if old.startswith("-") else f"the positional {old}"
            print(f"{self.prog}: note: {shown} is now {new}; the old spelling will be removed in {RENAMED_UNTIL}",
                  file=sys.stderr, flush=True)
        missing = [flag for action, flag in self._required if getattr(args, action.dest, None) in (None, [])]
        if missing:
            self.error(f"the following arguments are required: {', '.join(missing)}")
        return args, rest


RENAMED_UNTIL = "0.3.0"  # the release that drops the old spellings


# A seed is any non-negative integer: negative seeds are almost always a typo, and refusing them
# keeps one spelling per seed (Python would accept -0 and 0 as the same seed).
seed = non_negative_int


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


def command_parser(prog, doc):
    """The parser of a subcommand whose --help shows its module docstring `doc` as written."""
    return ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_progress_flag(p):
    """--no-progress: the one switch for progress on stderr, the same in every subcommand
    (SARCHAT_NO_PROGRESS=1 does the same for every command)."""
    p.add_argument("--no-progress", "--no_progress", action="store_true",
                   help="no progress bar or progress lines on stderr (default: progress on for stages over a few seconds)")
    return p


def apply_progress_flag(args):
    from sarchat.transforms import progress

    progress.turn_off(bool(getattr(args, "no_progress", False)))


def parse_config(parser, argv, cls, beam=False):
    """The frozen `cls` of a command line: each field takes the flag of its name (a list becomes a
    tuple), --no-progress is applied, and a parse error is a UsageError. beam=True: the words that
    are none of the parser's flags must be Beam pipeline options (beam_options.parse_pipeline_args)
    and become the field `beam_args`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if beam:
        from sarchat.beam_pipelines.beam_options import parse_pipeline_args

        args, beam_args = parse_pipeline_args(parser, argv)
        args.beam_args = beam_args
    else:
        args = parser.parse_args(argv)
    apply_progress_flag(args)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def defaults(cls) -> dict:
    """{field: default} of a config dataclass: a flag's default is declared once, on its field."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def command_words(config, parser=None) -> list:
    """The flags of a config's settings that differ from their defaults, as a user would type them
    (`--formats parquet --identify-variants 2`): what a stage run without a command line records.
    With `parser`, a flag it collects with action="append" is repeated for each value."""
    appended = {s for a in (parser._actions if parser else ()) if isinstance(a, argparse._AppendAction)  # pylint: disable=protected-access
                for s in a.option_strings}
    words = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name == "beam_args" or value is None or value is False or value == field.default:
            continue
        flag = "--" + field.name.replace("_", "-")
        values = [str(v) for v in (value if isinstance(value, tuple) else (value,))] if value is not True else []
        words += [w for v in values for w in (flag, v)] if flag in appended else [flag, *values]
    return words
