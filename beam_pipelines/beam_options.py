"""Shared Beam set-up: split our flags from Beam's, and pick the runner we mean.

Beam's DirectRunner first tries the Prism runner, which downloads a binary (impossible offline and
surprising in a batch job). Unless the user names a runner, we run on the in-process FnApiRunner,
which honours --direct_num_workers and --direct_running_mode=multi_processing.
"""
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions


def has_runner_flag(beam_argv) -> bool:
    return any(a == "--runner" or a.startswith("--runner=") for a in beam_argv)


def make_pipeline(beam_argv, save_main_session: bool = False) -> beam.Pipeline:
    """A Pipeline from the leftover command-line flags (after our argparse took its own)."""
    options = PipelineOptions(list(beam_argv))
    options.view_as(SetupOptions).save_main_session = save_main_session
    if has_runner_flag(beam_argv):
        return beam.Pipeline(options=options)
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    return beam.Pipeline(runner=FnApiRunner(), options=options)
