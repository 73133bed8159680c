"""Build a tiny, randomly initialised Qwen3-VL checkpoint locally, with no download at all.

    python -m tests.tiny_qwen3vl OUT_DIR [--dataset GENERATED_OUT] [--vocab 4000] [--check]

A test fixture (it lives under tests/, out of the wheel) for running the `qwen3-vl` adapter through
real vLLM on a CPU (tests/test_real_vllm.py). Tokenizer, ChatML template and special tokens are
tiny_qwen2vl's. The model: Qwen3VLConfig with a 2-layer, 256-wide text model (4 heads of 64,
2 KV heads, interleaved M-RoPE 8/12/12) and a 2-block, 128-wide vision tower (16 px patches, 2x2
merge: 32 px per image token, one deepstack layer) projecting to 256, lm_head untied; weights
random (seed 0), bfloat16. Image pixels are capped at 448x448 so prompts stay short.
"""
import json
import os

from tests import tiny_checkpoints, tiny_qwen2vl


def build_processor(tokenizer):
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(patch_size=16, merge_size=2, temporal_patch_size=2,
                                            min_pixels=64 * 64, max_pixels=448 * 448,
                                            image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    video = Qwen3VLVideoProcessor(patch_size=16, merge_size=2, temporal_patch_size=2)
    return Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video,
                            chat_template=tiny_qwen2vl.CHAT_TEMPLATE)


def build_config(tokenizer, hidden=256, layers=2):
    from transformers import Qwen3VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tiny_qwen2vl.SPECIAL_TOKENS}
    vocab = -(-len(tokenizer) // 64) * 64
    text = {"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": hidden // 64, "num_key_value_heads": 2,
            "head_dim": 64, "hidden_act": "silu", "max_position_embeddings": 8192, "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0,
                                "mrope_section": [8, 12, 12], "mrope_interleaved": True},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"], "tie_word_embeddings": False,
            # wider random weights: with the default 0.02 vLLM gave the same greedy answer to all
            # 30 test prompts (transformers did not), so a broken image path could not be told apart
            "initializer_range": 0.2}
    vision = {"depth": 2, "hidden_size": 128, "intermediate_size": 256, "num_heads": 2, "in_channels": 3,
              "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": hidden,
              "num_position_embeddings": 256, "deepstack_visual_indexes": [0], "hidden_act": "gelu_pytorch_tanh"}
    return Qwen3VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                         video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                         vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False,
                         torch_dtype="bfloat16")


def build(out_dir, dataset=None, vocab_size=4000, seed=0):
    import torch
    from transformers import GenerationConfig, Qwen3VLForConditionalGeneration

    os.makedirs(out_dir, exist_ok=True)
    tokenizer = tiny_qwen2vl.build_tokenizer(tiny_qwen2vl.corpus(dataset), vocab_size)
    processor = build_processor(tokenizer)
    config = build_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).to(torch.bfloat16)
    model.config.architectures = ["Qwen3VLForConditionalGeneration"]
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
    return tiny_checkpoints.check_generation(out_dir, "Qwen3VLForConditionalGeneration", 256)


def main(argv=None):
    tiny_checkpoints.main(build, check, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    main()
