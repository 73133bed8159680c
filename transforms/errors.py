"""One error style for the whole toolkit.

Library code raises a `SarchatError` (or a subclass) whose message names the file, record or flag
at fault; the `sarchat` command catches it once (beam_pipelines/cli.py) and prints one line,

    sarchat <command>: error: <what> (<file/flag>)

exiting 2 for a usage error (a bad flag or flag value) and 1 for everything else (bad input, a
failed run). Nothing below the entry points prints, exits or calls sys.exit for an expected failure.
Vocabulary layer: imports nothing of the project.
"""


class SarchatError(Exception):
    """An expected failure with a message for the user; `exit_code` is what `sarchat` exits with."""
    exit_code = 1


class UsageError(SarchatError):
    """A flag or flag value that cannot work: exit 2, like argparse."""
    exit_code = 2


class InputError(SarchatError, ValueError):
    """An input file or record that is unusable as a whole (the message names it)."""


class DatasetError(InputError):
    """A generated dataset folder that cannot be used (no manifest, a file of the wrong size, ...)."""


class OutputError(SarchatError):
    """An output location that cannot be written, or that would overwrite something not ours."""


class RunFailed(SarchatError):
    """A run that finished but did not do its job (e.g. samples left without a prediction)."""
