"""What building each pipeline's Beam graph costs: leaf steps, ParDos, and seconds to build and
translate it (`to_runner_api`, what every runner does first), on the tiny demo's data.

    python benchmarks/graph_build.py [--demo DIR] [--repeats 8]

Beam spends about 10 ms on each step whatever it holds (docs/architecture.md, "Few Beam steps"),
which is much of a small run's time. Each graph is built --repeats times through
`beam_options.make_pipeline` (what the commands use: Beam's construction-time type check off) and
as often with that check on (Beam's default), alternating, in this one process; the medians and
their ratio are printed. --demo: a `sarchat demo --tiny` output folder (made in a temporary folder
when not given).
"""
import argparse
import collections
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def graphs(demo, out):
    """{name: function adding that graph to a pipeline}, for the demo's dataset and predictions."""
    from sarchat.beam_pipelines import flags, generate, stats
    from sarchat.transforms.score.pipeline import ScorePredictions, ScoreSettings
    from sarchat.transforms.score.score_inputs import plan_score_inputs
    from sarchat.transforms.stats.pipeline import DatasetStats

    gen_config = flags.parse_config(generate.build_parser(), ["--input", os.path.join(demo, "data"), "--output",
                                                               os.path.join(out, "g")], generate.GenerateConfig, beam=True)
    gen_plan = generate.prepare(gen_config)
    stats_config = flags.parse_config(stats.build_parser(), ["--dataset", os.path.join(demo, "dataset"), "--output",
                                                              os.path.join(out, "s")], stats.StatsConfig, beam=True)
    stats_settings = stats.settings_of(stats_config)
    preds = [os.path.join(demo, "runs", m, "predictions.parquet") for m in ("cfar", "blind", "oracle")]
    inputs = plan_score_inputs(os.path.join(demo, "dataset"), "test", preds, None, False, os.path.join(demo, "data"),
                               os.path.join(demo, "stats"))
    settings = ScoreSettings(output_dir=os.path.join(out, "r"), samples_per_task=1)
    return {
        "generate": lambda p: generate.build(p, gen_config, gen_config.output, *gen_plan),
        "stats": lambda p: p | DatasetStats(stats_settings),
        "score": lambda p: p | ScorePredictions(inputs, settings),
    }


def build_seconds(add, type_check):
    """(seconds to build and translate the graph, its runner-API proto)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from sarchat.beam_pipelines.beam_options import make_pipeline

    start = time.perf_counter()
    p = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([])) if type_check else make_pipeline([])
    add(p)
    proto = p.to_runner_api()
    return time.perf_counter() - start, proto


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", default=None, help="a `sarchat demo --tiny` output folder")
    ap.add_argument("--repeats", type=int, default=8)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        demo = args.demo
        if demo is None:
            demo = os.path.join(tmp, "demo")
            subprocess.run([sys.executable, "-m", "sarchat.beam_pipelines.cli", "demo", "--output", demo, "--tiny",
                            "--no-progress"], check=True, stdout=subprocess.DEVNULL)
        print(f"{'graph':10} {'leaf steps':>10} {'ParDos':>7} {'build s':>8} {'with type check':>16} {'ratio':>6}")
        for name, add in graphs(demo, tmp).items():
            build_seconds(add, False)  # first build: imports and caches
            runs = {False: [], True: []}
            for _ in range(args.repeats):
                for check in (False, True):
                    runs[check].append(build_seconds(add, check)[0])
            proto = build_seconds(add, False)[1]
            leaves = [t for t in proto.components.transforms.values() if not t.subtransforms]
            kinds = collections.Counter(t.spec.urn for t in leaves)
            ours, beams = statistics.median(runs[False]), statistics.median(runs[True])
            print(f"{name:10} {len(leaves):>10} {kinds['beam:transform:pardo:v1']:>7} {ours:>8.3f} {beams:>16.3f} "
                  f"{ours / beams:>6.2f}")
    print(f"(medians of {args.repeats} builds each, alternating, in one process)")


if __name__ == "__main__":
    main()
