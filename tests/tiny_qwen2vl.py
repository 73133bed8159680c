"""Build a tiny, randomly initialised Qwen2-VL checkpoint locally, with no download at all.

    python -m tests.tiny_qwen2vl OUT_DIR [--dataset GENERATED_OUT] [--vocab 4000] [--hidden 256] [--layers 2] [--check]

For smoke-testing the vLLM backend on a GPU machine without fetching multi-GB weights. What it needs:
`torch`, `transformers` (>= 4.45, which has Qwen2-VL; checked with 4.57 on CPU and 5.17 on an
H200 machine), `torchvision` (transformers' video processor) and `tokenizers` -- all in
`pip install '.[inference]'` (vllm depends on torchvision) -- and nothing from the network:

  * tokenizer: a byte-level BPE trained here on the dataset's questions and answers (or a built-in
    sentence list), with Qwen2-VL's special tokens (<|im_start|>, <|im_end|>, <|vision_start|>,
    <|image_pad|>, <|box_start|>, ...) at the front of the vocabulary, saved as a
    Qwen2TokenizerFast with a ChatML chat template that renders image parts the Qwen2-VL way;
  * image processor: Qwen2VLImageProcessor (14 px patches, 2x2 merge), pixels capped at 448x448 so
    prompts stay short;
  * model: Qwen2VLConfig with a 2-layer, 256-wide text model (4 heads of 64, 2 KV heads, M-RoPE
    sections 8/12/12) and a 2-block, 128-wide vision tower projecting to 256, token ids taken from
    the tokenizer; weights random (seed 0), bfloat16, safetensors.

The answers are gibberish, which is fine: the smoke test measures the plumbing and throughput.
`--check` loads everything back with transformers and runs one generate() step on a test image.
"""
import glob
import json
import os
from tests import tiny_checkpoints

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                  "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# ChatML with Qwen2-VL's image rendering; loops over content parts, so vLLM passes OpenAI-style parts.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_FALLBACK_TEXT = [
    "What kind of targets are in this SAR image? The image contains ship, aircraft and car.",
    "[count] How many ships are there in the image? There are 2 instances. {<12><40><57><90>}{<300><8><341><77>}",
    "[grounding] In this SAR image, I can identify several objects and their locations: There is a tank.",
    "[identify] This is a very small ship located in the top left portion of the image. It appears to be wide.",
    "[refer] Where is the harbor? {<294><358><329><427>} (bottom center) The bridge is far from the harbor.",
    "A small ship is visible in the bottom left portion of the image. 0123456789 <|box_start|>(1,2),(3,4)<|box_end|>",
]


def corpus(dataset=None, limit=20000):
    texts = list(_FALLBACK_TEXT) * 4
    if dataset:
        try:
            import pyarrow.parquet as pq

            for path in sorted(glob.glob(os.path.join(dataset, "parquet", "*", "dialogues-*.parquet"))):
                for row in pq.read_table(path, columns=["question", "answer"]).to_pylist():
                    texts.append(row["question"])
                    texts.append(row["answer"])
                    if len(texts) > limit:
                        return texts
        except Exception:
            pass
    return texts


def build_tokenizer(texts, vocab_size=4000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    try:
        from transformers import Qwen2TokenizerFast as TokCls
    except ImportError:  # pragma: no cover
        TokCls = PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = TokCls(tokenizer_object=tok, unk_token=None, bos_token=None, eos_token="<|im_end|>",
                  pad_token="<|endoftext|>", additional_special_tokens=SPECIAL_TOKENS[1:],
                  model_max_length=32768)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(tokenizer):
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=448 * 448)
    kwargs = {}
    try:  # transformers >= 4.52 wants a video processor too
        from transformers import Qwen2VLVideoProcessor

        kwargs["video_processor"] = Qwen2VLVideoProcessor()
    except Exception:
        pass
    try:
        return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
                                **kwargs)
    except TypeError:
        return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, **kwargs)


def build_config(tokenizer, hidden=256, layers=2):
    from transformers import Qwen2VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = -(-len(tokenizer) // 64) * 64
    heads, kv_heads = hidden // 64, max(1, hidden // 128)
    head_dim = hidden // heads
    half = head_dim // 2
    mrope = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]  # 8/12/12 for 64
    vision = {"depth": 2, "embed_dim": 128, "hidden_size": hidden, "num_heads": 2, "mlp_ratio": 2,
              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
              "in_chans": 3, "in_channels": 3, "hidden_act": "quick_gelu"}
    return Qwen2VLConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, hidden_act="silu",
        max_position_embeddings=8192, rope_theta=1000000.0, rms_norm_eps=1e-6, use_sliding_window=False,
        # Untied: with the output layer tied to the random embeddings, greedy decoding gave the same
        # (mostly empty) answer for every input, so a test could not tell a working image path from a
        # broken one.
        tie_word_embeddings=False, rope_scaling={"type": "mrope", "mrope_section": mrope},
        vision_config=vision, image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        vision_token_id=ids["<|vision_pad|>"], bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], torch_dtype="bfloat16",
    )


def build(out_dir, dataset=None, vocab_size=4000, seed=0, hidden=256, layers=2):
    import torch
    from transformers import GenerationConfig, Qwen2VLForConditionalGeneration

    os.makedirs(out_dir, exist_ok=True)
    tokenizer = build_tokenizer(corpus(dataset), vocab_size)
    processor = build_processor(tokenizer)
    config = build_config(tokenizer, hidden, layers)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    GenerationConfig(eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad_token_id=ids["<|endoftext|>"],
                     do_sample=False).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)  # tokenizer_config.json with the chat template
    # some transformers versions keep the processor's template only in chat_template.json(.jinja)
    with open(os.path.join(out_dir, "chat_template.json"), "w", encoding="utf-8") as fh:
        json.dump({"chat_template": CHAT_TEMPLATE}, fh)
    n_params = sum(p.numel() for p in model.parameters())
    text_config = getattr(config, "text_config", None) or config
    return {"out": out_dir, "vocab": getattr(text_config, "vocab_size", None),
            "tokenizer_size": len(tokenizer), "parameters": n_params}


def check(out_dir):
    """Load back with transformers and generate two tokens for one image + question."""
    return tiny_checkpoints.check_generation(out_dir, "Qwen2VLForConditionalGeneration", 256)


def main(argv=None):
    tiny_checkpoints.main(build, check, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    main()
