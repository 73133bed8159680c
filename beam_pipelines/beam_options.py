"""Shared Beam set-up: split our flags from Beam's, and pick the runner we mean.

Our flags and Beam's share one command line. `parse_pipeline_args(parser, argv)` parses ours and
lets through only what Beam's PipelineOptions really defines (--runner, --direct_num_workers,
--project, ...): anything else (`--seeds 3`, a stray word) is a UsageError with the closest flag of
ours or Beam's as a suggestion. Beam itself would only log "Unparseable argument" and run with the
default. `make_pipeline` checks again, so a launcher that parses on its own is covered too.

Some runners define their options in their own module, which Beam imports only when it creates the
runner, and Beam knows them only by their class path: `--runner=DaskRunner` would be refused, and so
would `--dask_client_address`. `RUNNER_MODULES` lists them; naming one (its short name, Beam's
lower-case or "runner"-less spellings, or its class path) imports its module before the flags are
checked, so its options are accepted like any other Beam option, and `make_pipeline` gives Beam the
class path. Without the runner's packages installed, the flag is a UsageError naming the extra.

Beam's DirectRunner first tries the Prism runner, which downloads a binary (impossible offline and
surprising in a batch job). Unless the user names a runner, we run on the in-process FnApiRunner,
which honours --direct_num_workers and --direct_running_mode=multi_processing.

Beam is imported inside the functions, after our flags are parsed: `sarchat SUB --help` and a bad
flag answer without paying for it.
"""
import difflib
import json

from sarchat.transforms import fileio
from sarchat.transforms.errors import UsageError


# Runners whose module Beam imports only to create them: (class path, the module's option prefix, the
# sarchat-bench extra that installs what the module imports). docs/runners.md.
RUNNER_MODULES = {
    "DaskRunner": ("apache_beam.runners.dask.dask_runner.DaskRunner", "--dask_", "dask"),
}


def runner_value(beam_argv):
    """The value of the last --runner flag (as Beam's argparse takes it), None without one."""
    value = None
    words = list(beam_argv)
    for i, word in enumerate(words):
        if word == "--runner" and i + 1 < len(words):
            value = words[i + 1]
        elif word.startswith("--runner="):
            value = word.split("=", 1)[1]
    return value


def module_runner(name):
    """The RUNNER_MODULES key a --runner value names (DaskRunner, daskrunner, dask, or the class
    path, as Beam's create_runner spells them), else None."""
    lowered = (name or "").lower()
    return next((key for key, (path, _, _) in RUNNER_MODULES.items()
                 if lowered in (key.lower(), key.lower()[:-len("runner")], path.lower())), None)


def register_runner_options(beam_argv):
    """Import the module of the runner beam_argv names, when it is one of RUNNER_MODULES, so that
    its PipelineOptions class is loaded (and its flags accepted). Returns its class path or None."""
    import importlib

    key = module_runner(runner_value(beam_argv))
    if key is None:
        return None
    path, _, extra = RUNNER_MODULES[key]
    try:
        importlib.import_module(path.rsplit(".", 1)[0])
    except ImportError as e:
        raise UsageError(f"--runner={runner_value(beam_argv)} needs packages that are not installed ({e}); "
                         f"install them with: pip install 'sarchat-bench[{extra}]'") from None
    return path


def _beam_parser(beam_argv=()):
    """An argparse parser holding every option of every PipelineOptions class Beam has loaded (the
    set PipelineOptions.get_all_options parses with), after the runner beam_argv names registered
    its own (register_runner_options); its errors raise UsageError."""
    from apache_beam.options import pipeline_options as po

    register_runner_options(beam_argv)

    class Parser(po._BeamArgumentParser):  # pylint: disable=protected-access
        def error(self, message):
            raise UsageError(f"Beam pipeline option: {message}")

    parser = Parser(allow_abbrev=False, add_help=False)
    classes = {}
    for cls in po.PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    return parser


def check_beam_args(beam_argv, our_flags=()):
    """UsageError unless every word of beam_argv is a Beam pipeline option or its value."""
    beam_argv = list(beam_argv)
    if not beam_argv:
        return
    named = module_runner(runner_value(beam_argv))
    for word in beam_argv:
        for key, (_, prefix, _) in RUNNER_MODULES.items():
            # refused whether or not an earlier command in this process imported the runner's module
            if word.startswith(prefix) and named != key:
                raise UsageError(f"flag {word.split('=', 1)[0]}: the {prefix}* options belong to "
                                 f"--runner={key}, which this command line does not name")
    parser = _beam_parser(beam_argv)
    _, unknown = parser.parse_known_args(beam_argv)
    if not unknown:
        return
    word = unknown[0]
    if not word.startswith("-"):
        raise UsageError(f"unexpected argument {word!r} (not a value of any flag)")
    flag = word.split("=", 1)[0]
    known = sorted(set(our_flags) | {s for a in parser._actions for s in a.option_strings})
    close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise UsageError(f"unknown flag {flag}: neither a flag of this command nor a Beam pipeline option{hint}")


def parse_pipeline_args(parser, argv):
    """(our args, Beam's argv): our parser takes its flags, the rest must be Beam pipeline options."""
    args, beam_argv = parser.parse_known_args(list(argv))
    check_beam_args(beam_argv, [s for action in parser._actions for s in action.option_strings])
    return args, beam_argv


def _no_semi_persistent_directory_noise(record) -> bool:
    """Logging filter: drop the worker's "No semi_persistent_directory found" warning that Beam's
    local job service relays once per worker process of a multi-process local run. It is about
    main-session pickling, which these pipelines do not use; a user can do nothing about it."""
    try:
        return "No semi_persistent_directory found" not in record.getMessage()
    except Exception:  # noqa: BLE001 - a filter never breaks logging
        return True


def make_pipeline(beam_argv, save_main_session: bool = False):
    """A Pipeline from the leftover command-line flags (after our argparse took its own)."""
    import logging

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, TypeOptions

    check_beam_args(beam_argv)
    # a filter already there is not added twice
    logging.getLogger("apache_beam.runners.portability.local_job_service").addFilter(_no_semi_persistent_directory_noise)
    path = register_runner_options(beam_argv)
    if path is not None:  # Beam creates such a runner from its class path only
        beam_argv = _with_runner(beam_argv, path)
    options = PipelineOptions(list(beam_argv))
    options.view_as(SetupOptions).save_main_session = save_main_session
    # Beam's construction-time type check infers every step's output type from its code, which
    # costs about a third of building a graph (0.3 s of every `sarchat score`), and checks our fixed
    # graphs rather than anyone's data; the tests run the graphs. Keys are still given deterministic
    # coders, and --runtime_type_check still works.
    options.view_as(TypeOptions).pipeline_type_check = False
    if runner_value(beam_argv) is not None:
        return beam.Pipeline(options=options)
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    return beam.Pipeline(runner=FnApiRunner(), options=options)


def _with_runner(beam_argv, value):
    """beam_argv with every --runner flag's value replaced by `value`."""
    words = list(beam_argv)
    spaced = {i for i, word in enumerate(words[:-1]) if word == "--runner"}  # `--runner NAME`: two words
    return [f"--runner={value}" if i in spaced or word.startswith("--runner=") else word
            for i, word in enumerate(words) if i - 1 not in spaced]


def submits_only(options) -> bool:
    """True when running the pipeline only submits or stages it: a Flex Template launch (the launcher
    passes --template_location and submits the staged job itself after this program exits),
    --no_wait_until_finish, or a --dry_run. Waiting (and reading results back) is then wrong."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, StandardOptions, TestOptions

    return bool(options.view_as(GoogleCloudOptions).template_location
                or options.view_as(StandardOptions).no_wait_until_finish
                or options.view_as(TestOptions).dry_run)


# Runners whose workers run on this machine with this process's environment: the FnApiRunner we
# pick (in-process, or --direct_running_mode=multi_processing), and Beam's local runners by name.
LOCAL_RUNNERS = ("DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner", "FnApiRunner", "PrismRunner")


def runner_name(options):
    """The runner's class name (DataflowRunner, DaskRunner, ...), None when the options name none."""
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) or runner is None else type(runner).__name__
    return None if name is None else name.rsplit(".", 1)[-1]


def runs_here(options) -> bool:
    """True when the pipeline's workers run on this machine (progress can be shown live)."""
    name = runner_name(options)
    return name is None or name in LOCAL_RUNNERS


def launch(pipeline, progress=None):
    """Run the pipeline; wait for it unless it is only being submitted. Returns (result, finished).

    progress: (label, stage, total, unit): while a local run goes, the workers' counts of `stage`
    (transforms/progress.py) are shown on stderr as `label` (a bar, or a line every few seconds);
    a remote job (Dataflow) gets one line saying where its progress is shown."""
    from sarchat.transforms import progress as progress_display

    if progress is not None and not submits_only(pipeline.options) and progress_display.enabled():
        if runs_here(pipeline.options):
            with progress_display.watching(*progress):
                result = pipeline.run()
                result.wait_until_finish()
            return result, True
        where = (f"the job's counters (namespace sarchat.{progress[1].split('.')[0]})"
                 if runner_name(pipeline.options) != "DaskRunner" else "the Dask scheduler's dashboard")
        print(f"{progress[0].split(':')[0]}: the job runs remotely; its progress is {where} and the workers' "
              f"log lines 'sarchat progress: {progress[1]}: N done'", file=progress_display.stream(), flush=True)
    result = pipeline.run()
    if submits_only(pipeline.options):
        return result, False
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)  # the DaskRunner's connection to the scheduler
        if client is not None and hasattr(client, "close"):
            client.close()
    return result, True


def launch_and_read_json(pipeline, path, progress=None):
    """Launch; the JSON document the job wrote at `path` once it finished, None when only submitted."""
    _, finished = launch(pipeline, progress)
    if not finished:
        return None
    return json.loads(fileio.read_bytes(path))
