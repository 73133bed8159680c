"""The `sarchat` console command: one subcommand per stage.

Each subcommand lives in its own module with a `run(argv)` function that parses its own flags
(and, for Beam pipelines, passes the rest to PipelineOptions). Modules are imported lazily so that
`sarchat synth` does not pay for importing Beam, and `sarchat infer` only imports vLLM when asked.
"""
import importlib
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "synth": ("sarchat.beam_pipelines.synth", "write a small synthetic SAR dataset in the SARDet-100K layout"),
    "generate": ("sarchat.beam_pipelines.generate", "Beam pipeline: COCO SAR detections -> SARChat dialogues"),
    "regenerate": ("sarchat.beam_pipelines.regenerate", "generate into BASE/v-<hash> once per input+config; LATEST pointer"),
    "infer": ("sarchat.inference.run", "run a model (vllm, openai, cfar, oracle, blind) over a split"),
    "infer-beam": ("sarchat.beam_pipelines.infer_beam", "Beam RunInference pipeline: vLLM over a split (Dataflow GPUs)"),
    "score": ("sarchat.beam_pipelines.score", "Beam pipeline: score predictions, write metrics and report"),
    "stats": ("sarchat.beam_pipelines.stats", "Beam pipeline: dataset statistics (the paper's tables)"),
    "demo": ("sarchat.beam_pipelines.demo", "synth, generate, stats, infer, score and report in one go"),
}


def usage() -> str:
    lines = ["usage: sarchat SUBCOMMAND [options]", "", "subcommands:"]
    for name, (_, text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<10} {text}")
    lines.append("")
    lines.append("`sarchat SUBCOMMAND --help` lists a subcommand's options.")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"sarchat: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    result = module.run(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
