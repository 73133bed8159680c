"""The last step of a `sarchat regenerate` job, a Beam DoFn: publish the finished run.

Apart from regenerate.py so that `sarchat regenerate --help` does not import Beam (a DoFn subclass
needs it when the class is defined). It calls regenerate's functions through the module, so a test
that patches regenerate._checkpoint reaches this step too.
"""
import apache_beam as beam

from sarchat.beam_pipelines import regenerate


class PublishFn(beam.DoFn):
    """The last step of the job: receives the manifest of the finished run in `tmp` and publishes it."""

    def __init__(self, base, tmp, name, expected_hash):
        self.base, self.tmp, self.name, self.expected_hash = base, tmp, name, expected_hash

    def process(self, manifest):
        regenerate._checkpoint("before_publish")  # pylint: disable=protected-access
        status = regenerate.publish(self.base, self.tmp, self.name, self.expected_hash)
        yield {"version": self.name, "status": status, "dialogues": sum(
            c.get("dialogues", 0) for c in manifest.get("counts", {}).values())}
