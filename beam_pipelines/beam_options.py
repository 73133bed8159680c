"""Shared Beam set-up: split our flags from Beam's, and pick the runner we mean.

Beam's DirectRunner first tries the Prism runner, which downloads a binary (impossible offline and
surprising in a batch job). Unless the user names a runner, we run on the in-process FnApiRunner,
which honours --direct_num_workers and --direct_running_mode=multi_processing.
"""
import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions, SetupOptions, StandardOptions,
                                                  TestOptions)


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


def submits_only(options) -> bool:
    """True when running the pipeline only submits or stages it: a Flex Template launch (the launcher
    passes --template_location and submits the staged job itself after this program exits),
    --no_wait_until_finish, or a --dry_run. Waiting (and reading results back) is then wrong."""
    return bool(options.view_as(GoogleCloudOptions).template_location
                or options.view_as(StandardOptions).no_wait_until_finish
                or options.view_as(TestOptions).dry_run)


def launch(pipeline):
    """Run the pipeline; wait for it unless it is only being submitted. Returns (result, finished)."""
    result = pipeline.run()
    if submits_only(pipeline.options):
        return result, False
    result.wait_until_finish()
    return result, True


def launch_and_read_json(pipeline, path):
    """Launch; the JSON document the job wrote at `path` once it finished, None when only submitted."""
    _, finished = launch(pipeline)
    if not finished:
        return None
    with FileSystems.open(path) as f:
        return json.loads(f.read())
