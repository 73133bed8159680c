"""Beam steps that every runner runs alike: one output per step, and one step that gathers it all.

Beam's DaskRunner (apache-beam 2.77) turns a pipeline into one dask graph and gets three things
wrong without a word (docs/runners.md):
- a multi-output ParDo (`with_outputs`, `TaggedOutput`, `beam.Partition`) hands every element to
  every one of its outputs;
- only the step applied last is computed, with what it depends on through its main inputs: a
  second sink never runs;
- a side input is computed inside each task that reads it, with everything upstream of it, so a
  step upstream of a side input runs again for every reader (a step that writes files, again).

So the pipelines keep to three rules, which every runner runs the same way:
- a step with several kinds of output emits `(tag, value)` pairs on its one output (`tagged`), and
  each consumer takes its kind with `select(tag)`;
- the last step reads everything it reports on through its main input, `Gather`ed, never through
  `ToList`/`CombineGlobally` (which read their own result back as a side input) nor through a side
  input of a step that writes files; every step that writes files is upstream of it;
- a side input holds only what reading files computes (sample ids, duplicated annotation ids):
  computing it again writes nothing and gives the same value.
"""

import apache_beam as beam


def tagged(tag, value):
    """One output element of a step with several kinds of output."""
    return tag, value


def _values_of(element, tag):
    if element[0] == tag:
        yield element[1]


def select(tag):
    """The step taking the values of one tag from a PCollection of `tagged` pairs."""
    return beam.FlatMap(_values_of, tag)


def _values_keyed_once(element, tag):
    if element[0] == tag:
        yield 0, element[1]


def select_keyed(tag):
    """The step taking the values of one tag, each under one key (0): what a CombinePerKey then
    combines where CombineGlobally would, in one step where CombineGlobally takes six; its
    AsSingleton side input gives `default_value` when the tag has no value."""
    return beam.FlatMap(_values_keyed_once, tag)


def _keyed(value, tag=None):
    return 0, (True, value if tag is None else tagged(tag, value))


def _keyed_values_of(element, tag):
    if element[0] == tag:
        yield _keyed(element[1], tag)


def _present(kv):
    return [value for present, value in kv[1] if present]


def _gathered(pipeline, keyed):
    """The one list of the `_keyed` PCollections' values (a seed, so that it exists when they are empty)."""
    seed = pipeline | "Seed" >> beam.Create([(0, (False, None))])  # not Impulse, which the DaskRunner cannot run
    return ((seed, *keyed)
            | "Flatten" >> beam.Flatten()
            | "Group" >> beam.GroupByKey()
            | "Values" >> beam.Map(_present))


class Gather(beam.PTransform):
    """PCollection -> exactly one element: the list of all its elements (empty when there are none),
    in no particular order (the consumer sorts). Through a GroupByKey, so the consumer reads it as
    its main input and every runner computes what it depends on once, in the job's graph."""

    def expand(self, pcoll):
        return _gathered(pcoll.pipeline, [pcoll | "Key" >> beam.Map(_keyed)])


class GatherTagged(beam.PTransform):
    """{tag: PCollection} -> exactly one element: the list of `tagged(tag, element)` pairs of them all,
    as Gather gives it. A tag in `select` names a PCollection of `tagged` pairs of several kinds, of
    which that tag's values are taken (one step per input)."""

    def __init__(self, select=(), label=None):
        super().__init__(label)
        self.select = frozenset(select)

    def expand(self, inputs):
        keyed = [pcoll | f"Key_{tag}" >> (beam.FlatMap(_keyed_values_of, tag) if tag in self.select
                                          else beam.Map(_keyed, tag))
                 for tag, pcoll in sorted(inputs.items())]
        return _gathered(keyed[0].pipeline, keyed)
