"""Build a tiny, randomly initialised LLaVA-OneVision checkpoint locally, with no download at all.

    python -m tests.tiny_llava_onevision OUT_DIR [--dataset GENERATED_OUT] [--vocab 4000] [--check]

A test fixture (under tests/, out of the wheel) for running the `llava-onevision` adapter through
real vLLM on a CPU (tests/test_real_vllm.py):

  * tokenizer: a byte-level BPE trained here on the dataset's texts (tiny_qwen2vl.corpus) with
    ChatML's specials and LLaVA's <image> and <video>, saved as a Qwen2TokenizerFast with
    llava-onevision-hf's ChatML template (image parts rendered as "<image>\\n");
  * processor: LlavaOnevisionProcessor with a 56 px base image and any-resolution tiles up to
    112x112 (14 px patches: 16 tokens per tile), so prompts stay short;
  * model: LlavaOnevisionConfig with a 2-layer, 64-wide SigLIP tower (all features, last layer), a
    2-layer projector and a 2-layer, 256-wide Qwen2 (4 heads of 64, 2 KV heads), lm_head untied;
    weights random (seed 0), bfloat16. Weights are written under the names vLLM 0.32 loads
    (tiny_llava.vllm_key: transformers 5 saves the SigLIP tower without its `vision_model.` level).
"""
import json
import os

from tests import tiny_checkpoints
from tests.tiny_llava import vllm_key
from tests.tiny_qwen2vl import corpus

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
BASE, PATCH = 56, 14
PINPOINTS = [[56, 56], [56, 112], [112, 56], [112, 112]]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}<image>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer(texts, vocab_size=4000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = Qwen2TokenizerFast(tokenizer_object=tok, unk_token=None, bos_token=None, eos_token="<|im_end|>",
                              pad_token="<|endoftext|>", additional_special_tokens=SPECIAL_TOKENS[1:],
                              model_max_length=8192)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(tokenizer):
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor

    image_processor = LlavaOnevisionImageProcessor(size={"height": BASE, "width": BASE}, image_grid_pinpoints=PINPOINTS,
                                                   image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    kwargs = {}
    try:
        from transformers import LlavaOnevisionVideoProcessor

        kwargs["video_processor"] = LlavaOnevisionVideoProcessor(size={"height": BASE, "width": BASE})
    except Exception:  # pragma: no cover
        pass
    return LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                   num_image_tokens=(BASE // PATCH) ** 2, vision_feature_select_strategy="full",
                                   chat_template=CHAT_TEMPLATE, vision_aspect_ratio="anyres_max_9", **kwargs)


def build_config(tokenizer, hidden=256, layers=2):
    from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = -(-len(tokenizer) // 64) * 64
    vision = SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                image_size=BASE, patch_size=PATCH)
    text = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                       num_attention_heads=hidden // 64, num_key_value_heads=2, max_position_embeddings=8192,
                       rms_norm_eps=1e-6, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                       pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False,
                       # wider random weights: with the default 0.02 vLLM's greedy answers to
                       # different inputs were the same (empty)
                       initializer_range=0.2)
    return LlavaOnevisionConfig(vision_config=vision, text_config=text, image_token_index=ids["<image>"],
                                video_token_index=ids["<video>"], vision_feature_select_strategy="full",
                                vision_feature_layer=-1, image_grid_pinpoints=PINPOINTS,
                                vision_aspect_ratio="anyres_max_9", tie_word_embeddings=False,
                                torch_dtype="bfloat16")


def build(out_dir, dataset=None, vocab_size=4000, seed=0):
    import torch
    from safetensors.torch import save_file
    from transformers import GenerationConfig, LlavaOnevisionForConditionalGeneration

    os.makedirs(out_dir, exist_ok=True)
    tokenizer = build_tokenizer(corpus(dataset), vocab_size)
    processor = build_processor(tokenizer)
    config = build_config(tokenizer)
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config).to(torch.bfloat16)
    config.architectures = ["LlavaOnevisionForConditionalGeneration"]
    config.save_pretrained(out_dir)
    state = {vllm_key(k): v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    GenerationConfig(eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad_token_id=ids["<|endoftext|>"],
                     do_sample=False).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "chat_template.json"), "w", encoding="utf-8") as fh:
        json.dump({"chat_template": CHAT_TEMPLATE}, fh)
    return {"out": out_dir, "tokenizer_size": len(tokenizer),
            "parameters": sum(p.numel() for p in model.parameters())}


def check(out_dir):
    """Load back with transformers and generate two tokens for one image + question."""
    return tiny_checkpoints.check_generation(out_dir, "LlavaOnevisionForConditionalGeneration", 96)


def main(argv=None):
    tiny_checkpoints.main(build, check, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    main()
