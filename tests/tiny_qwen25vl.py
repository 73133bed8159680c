"""Build a tiny, randomly initialised Qwen2.5-VL checkpoint locally, with no download at all.

    python -m tests.tiny_qwen25vl OUT_DIR [--dataset GENERATED_OUT] [--vocab 4000] [--check]

Qwen2.5-VL's counterpart of tiny_qwen2vl.py (same tokenizer, ChatML template and special tokens,
built by that module), for running the `qwen2.5-vl` adapter through real vLLM on a CPU
(tests/test_real_vllm.py). The model: Qwen2_5_VLConfig with a 2-layer, 256-wide text model
(M-RoPE 8/12/12) and a 2-block, 128-wide windowed vision tower (SwiGLU MLP, RMSNorm, window 112 px,
block 1 with full attention) projecting to 256, lm_head untied; weights random (seed 0), bfloat16. transformers'
own save_pretrained names are what vLLM 0.32 loads for this architecture.
"""
import json
import os

from tests import tiny_qwen2vl
from tests import tiny_checkpoints


def build_processor(tokenizer):
    from transformers import Qwen2VLImageProcessor

    try:
        from transformers import Qwen2_5_VLProcessor as Proc
    except ImportError:  # pragma: no cover
        from transformers import Qwen2VLProcessor as Proc
    kwargs = {}
    try:
        from transformers import Qwen2VLVideoProcessor

        kwargs["video_processor"] = Qwen2VLVideoProcessor()
    except Exception:  # pragma: no cover
        pass
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=448 * 448)
    return Proc(image_processor=image_processor, tokenizer=tokenizer, chat_template=tiny_qwen2vl.CHAT_TEMPLATE,
                **kwargs)


def build_config(tokenizer, hidden=256, layers=2):
    from transformers import Qwen2_5_VLConfig

    base = tiny_qwen2vl.build_config(tokenizer, hidden, layers).to_dict()
    text = base.get("text_config") or {}
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tiny_qwen2vl.SPECIAL_TOKENS}
    vision = {"depth": 2, "hidden_size": 128, "intermediate_size": 256, "num_heads": 2, "in_channels": 3,
              "out_hidden_size": hidden, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
              "window_size": 112, "fullatt_block_indexes": [1], "tokens_per_second": 2, "hidden_act": "silu"}
    flat = {k: text.get(k, base.get(k)) for k in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps")}
    # untied: with tied random embeddings the model mostly repeats its last input token ("\n"),
    # so answers would barely depend on the input
    rope = text.get("rope_scaling") or base.get("rope_scaling") or text.get("rope_parameters") \
        or base.get("rope_parameters")
    return Qwen2_5_VLConfig(
        **flat, tie_word_embeddings=False, rope_theta=1000000.0, use_sliding_window=False, rope_scaling=rope, vision_config=vision,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        vision_token_id=ids["<|vision_pad|>"], bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], torch_dtype="bfloat16",
    )


def build(out_dir, dataset=None, vocab_size=4000, seed=0, hidden=256, layers=2):
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    os.makedirs(out_dir, exist_ok=True)
    tokenizer = tiny_qwen2vl.build_tokenizer(tiny_qwen2vl.corpus(dataset), vocab_size)
    processor = build_processor(tokenizer)
    config = build_config(tokenizer, hidden, layers)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    GenerationConfig(eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad_token_id=ids["<|endoftext|>"],
                     do_sample=False).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "chat_template.json"), "w", encoding="utf-8") as fh:
        json.dump({"chat_template": tiny_qwen2vl.CHAT_TEMPLATE}, fh)
    return {"out": out_dir, "tokenizer_size": len(tokenizer),
            "parameters": sum(p.numel() for p in model.parameters())}


def check(out_dir):
    """Load back with transformers and generate two tokens for one image + question."""
    return tiny_checkpoints.check_generation(out_dir, "Qwen2_5_VLForConditionalGeneration", 252)


def main(argv=None):
    tiny_checkpoints.main(build, check, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    main()
