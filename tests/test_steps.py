"""transforms/steps.py, the steps every runner runs alike: `tagged`/`select` instead of a multi-output
step, `Gather` instead of ToList (docs/runners.md). The Dask cluster checks are tests/test_engines.py."""
import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from sarchat.beam_pipelines.beam_options import make_pipeline
from sarchat.transforms.steps import Gather, GatherTagged, select, select_keyed, tagged


def test_select_takes_one_tag_and_gather_gives_one_list():
    p = make_pipeline([])
    pairs = p | "Numbers" >> beam.Create(list(range(7))) | "Parity" >> beam.Map(
        lambda n: tagged("odd" if n % 2 else "even", n))
    odd = pairs | "Odd" >> select("odd")
    assert_that(odd, equal_to([1, 3, 5]), label="OddOnly")
    gathered = pairs | "Even" >> select("even") | "GatherEven" >> Gather() | "Sort" >> beam.Map(sorted)
    assert_that(gathered, equal_to([[0, 2, 4, 6]]), label="OneList")
    # GatherTagged: one list of (tag, value) pairs; a `select` input gives only its tag's values
    both = {"odd": odd, "even": pairs} | "GatherTagged" >> GatherTagged(select=["even"]) | "SortTagged" >> beam.Map(sorted)
    assert_that(both, equal_to([[("even", 0), ("even", 2), ("even", 4), ("even", 6),
                                 ("odd", 1), ("odd", 3), ("odd", 5)]]), label="Tagged")
    p.run().wait_until_finish()


def test_gather_of_nothing_is_one_empty_list():
    """Like ToList: the step after it runs once even when there is nothing to gather."""
    p = make_pipeline([])
    empty = p | beam.Create([0]) | beam.FlatMap(lambda _: [])
    assert_that(empty | Gather(), equal_to([[]]))
    assert_that({"nothing": empty} | "GatherTagged" >> GatherTagged(), equal_to([[]]), label="NoneTagged")
    p.run().wait_until_finish()


def test_select_keyed_feeds_a_combine_whose_side_input_has_a_default():
    """What generate's duplicated ids and score's shown samples use instead of CombineGlobally."""
    p = make_pipeline([])
    pairs = p | "Numbers" >> beam.Create(list(range(5))) | "Parity" >> beam.Map(
        lambda n: tagged("odd" if n % 2 else "even", n))
    once = p | "Once" >> beam.Create([None])
    for tag, expected in (("even", 6), ("none", -1)):
        total = beam.pvalue.AsSingleton(
            pairs | f"Keyed{tag}" >> select_keyed(tag) | f"Sum{tag}" >> beam.CombinePerKey(sum)
            | f"Value{tag}" >> beam.Values(), default_value=-1)
        assert_that(once | f"Read{tag}" >> beam.Map(lambda _, t: t, total), equal_to([expected]), label=f"Is{tag}")
    p.run().wait_until_finish()
