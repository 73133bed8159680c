"""Build a tiny, randomly initialised Gemma 3 (vision) checkpoint locally, with no download at all.

    python -m tests.tiny_gemma3 OUT_DIR [--dataset GENERATED_OUT] [--vocab 4000] [--check]

A test fixture (under tests/, out of the wheel) for running the `gemma-3` adapter through real
vLLM on a CPU (tests/test_real_vllm.py):

  * tokenizer: a byte-level BPE trained here on the dataset's texts (tiny_qwen2vl.corpus) with
    Gemma's specials (<bos>, <eos>, <pad>, <start_of_turn>, <end_of_turn>, <start_of_image>,
    <end_of_image>, <image_soft_token>), newline runs "\n".."\n\n\n\n" as single tokens (as in
    Gemma's vocabulary; vLLM looks them up) and Gemma 3's turn template (image parts rendered as
    <start_of_image>, which the processor expands);
  * processor: Gemma3Processor, 64 px images (16 px patches), 4 tokens per image, no pan-and-scan;
  * model: Gemma3Config with a 2-layer, 64-wide SigLIP tower and a 2-layer, 256-wide Gemma 3 text
    model (4 heads of 64, 2 KV heads, one sliding-window layer); weights random (seed 0), bfloat16,
    written under the names vLLM 0.32 loads (tiny_llava.vllm_key: transformers 5 saves the SigLIP
    tower without its `vision_model.` level).
"""
import json
import os

from tests import tiny_checkpoints
from tests.tiny_llava import vllm_key
from tests.tiny_qwen2vl import corpus

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                  "<end_of_image>", "<image_soft_token>"]
IMAGE, PATCH, TOKENS = 64, 16, 4

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item or 'image_url' in item %}<start_of_image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def build_tokenizer(texts, vocab_size=4000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        additional_special_tokens=SPECIAL_TOKENS[4:], model_max_length=8192,
        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                              "image_token": "<image_soft_token>"})
    # Gemma's vocabulary has runs of newlines as single tokens, and vLLM's Gemma 3 processor looks
    # them up by their text ("\n" .. "\n\n\n\n") when it expands the image placeholder.
    fast.add_tokens(["\n\n\n\n", "\n\n\n", "\n\n", "\n"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(tokenizer):
    from transformers import Gemma3ImageProcessor, Gemma3Processor

    image_processor = Gemma3ImageProcessor(size={"height": IMAGE, "width": IMAGE}, image_mean=[0.5, 0.5, 0.5],
                                           image_std=[0.5, 0.5, 0.5], do_pan_and_scan=False)
    return Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
                           image_seq_length=TOKENS)


def build_config(tokenizer, hidden=256, layers=2):
    from transformers import Gemma3Config, Gemma3TextConfig, SiglipVisionConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = -(-len(tokenizer) // 64) * 64
    vision = SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                                image_size=IMAGE, patch_size=PATCH, vision_use_head=False)
    text = Gemma3TextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=2,
                            head_dim=64, query_pre_attn_scalar=64, sliding_window=512,
                            layer_types=["sliding_attention", "full_attention"], max_position_embeddings=8192,
                            bos_token_id=ids["<bos>"], eos_token_id=[ids["<eos>"], ids["<end_of_turn>"]],
                            pad_token_id=ids["<pad>"])
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=TOKENS,
                        boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
                        image_token_index=ids["<image_soft_token>"], torch_dtype="bfloat16")


def build(out_dir, dataset=None, vocab_size=4000, seed=0):
    import torch
    from safetensors.torch import save_file
    from transformers import Gemma3ForConditionalGeneration, GenerationConfig

    os.makedirs(out_dir, exist_ok=True)
    tokenizer = build_tokenizer(corpus(dataset), vocab_size)
    processor = build_processor(tokenizer)
    config = build_config(tokenizer)
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config).to(torch.bfloat16)
    config.architectures = ["Gemma3ForConditionalGeneration"]
    config.save_pretrained(out_dir)
    state = {vllm_key(k): v.detach().contiguous().clone() for k, v in model.state_dict().items()
             if k != "lm_head.weight"}  # tied to the embeddings
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<eos>", "<end_of_turn>", "<pad>", "<bos>")}
    GenerationConfig(bos_token_id=ids["<bos>"], eos_token_id=[ids["<eos>"], ids["<end_of_turn>"]],
                     pad_token_id=ids["<pad>"], do_sample=False).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "chat_template.json"), "w", encoding="utf-8") as fh:
        json.dump({"chat_template": CHAT_TEMPLATE}, fh)
    return {"out": out_dir, "tokenizer_size": len(tokenizer),
            "parameters": sum(p.numel() for p in model.parameters())}


def check(out_dir):
    """Load back with transformers and generate two tokens for one image + question."""
    return tiny_checkpoints.check_generation(out_dir, "Gemma3ForConditionalGeneration", 96)


def main(argv=None):
    tiny_checkpoints.main(build, check, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    main()
