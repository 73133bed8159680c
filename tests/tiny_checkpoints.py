"""What the tiny random checkpoint builders share (tiny_qwen2vl, tiny_qwen25vl, tiny_llava): the
transformers load-back check and the command line. Torch and transformers are imported lazily."""
import argparse
import inspect
import json


def check_generation(out_dir, model_class: str, image_side: int = 256) -> dict:
    """Load the checkpoint back with transformers and generate two tokens for one image + question."""
    import numpy as np
    import torch
    import transformers
    from PIL import Image

    processor = transformers.AutoProcessor.from_pretrained(out_dir)
    model = getattr(transformers, model_class).from_pretrained(out_dir, torch_dtype=torch.float32)
    pixels = (np.random.default_rng(0).random((image_side, image_side)) * 255).astype("uint8")
    image = Image.fromarray(pixels).convert("RGB")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "[count] How many ships?"}]}]
    if getattr(processor, "chat_template", None):
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    else:  # transformers 4.x keeps the template on the tokenizer
        prompt = processor.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    return {"prompt_tokens": int(inputs["input_ids"].shape[1]),
            "generated": int(out.shape[1] - inputs["input_ids"].shape[1])}


def main(build, check, description, argv=None):
    """`python -m tests.tiny_<model> OUT [--dataset GENERATED_OUT] [--vocab N] [--check]`."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("out")
    p.add_argument("--dataset", default=None, help="generated dataset whose texts train the tokenizer")
    p.add_argument("--vocab", type=int, default=4000)
    p.add_argument("--check", action="store_true", help="load back and generate with transformers")
    size = {"hidden": "text model width (a multiple of 128; default 256)",
            "layers": "text model layers (default 2)"}
    takes = inspect.signature(build).parameters
    for name, help_text in size.items():
        if name in takes:  # a bigger model, so the engine's share of a sample grows (benchmarks)
            p.add_argument(f"--{name}", type=int, default=takes[name].default, help=help_text)
    args = p.parse_args(argv)
    info = build(args.out, args.dataset, args.vocab, **{k: getattr(args, k) for k in size if k in takes})
    if args.check:
        info["check"] = check(args.out)
    print(json.dumps(info))


def build_many(argv=None):
    """`python -m tests.tiny_checkpoints OUT_ROOT --dataset GENERATED_OUT NAME=MODULE ...`: each
    builder's checkpoint in OUT_ROOT/NAME, in one process (torch and transformers imported once,
    about 8 s of CPU each time saved). Each build seeds itself, so the checkpoints are the ones the
    builders' own commands write."""
    import importlib

    p = argparse.ArgumentParser(description=build_many.__doc__.split("\n\n")[0])
    p.add_argument("out_root")
    p.add_argument("--dataset", default=None)
    p.add_argument("builders", nargs="+", metavar="NAME=MODULE")
    args = p.parse_args(argv)
    for item in args.builders:
        name, _, module = item.partition("=")
        info = importlib.import_module(module).build(f"{args.out_root}/{name}", args.dataset)
        print(json.dumps(info), flush=True)


if __name__ == "__main__":
    build_many()
