"""A fake of vllm.LLM for tests: the real `chat` signature, RequestOutput-shaped results.

vllm/entrypoints/llm.py (v0.8-0.9):
  def chat(self, messages, sampling_params=None, use_tqdm=True, lora_request=None,
           chat_template=None, chat_template_content_format="auto", add_generation_prompt=True,
           continue_final_message=False, tools=None, chat_template_kwargs=None,
           mm_processor_kwargs=None) -> list[RequestOutput]
"""
import json
from dataclasses import dataclass, field

REAL_CHAT_PARAMS = ["self", "messages", "sampling_params", "use_tqdm", "lora_request", "chat_template",
                    "chat_template_content_format", "add_generation_prompt", "continue_final_message",
                    "tools", "chat_template_kwargs", "mm_processor_kwargs"]


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list = field(default_factory=list)
    finish_reason: str = "stop"


@dataclass
class RequestOutput:
    request_id: str
    prompt: str
    outputs: list
    finished: bool = True


@dataclass
class FakeSamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    seed: int = None
    skip_special_tokens: bool = True
    stop: list = None


class FakeLLM:
    """Records every call; `answer(conversation) -> text`; a prompt containing `poison` raises."""

    def __init__(self, answer=None, poison=None):
        self.calls = []
        self.answer = answer or (lambda conv: "There is 1 instance. <|box_start|>(10,20),(30,40)<|box_end|><|im_end|>")
        self.poison = poison

    def chat(self, messages, sampling_params=None, use_tqdm=True, lora_request=None, chat_template=None,
             chat_template_content_format="auto", add_generation_prompt=True, continue_final_message=False,
             tools=None, chat_template_kwargs=None, mm_processor_kwargs=None):
        self.calls.append({"messages": messages, "sampling_params": sampling_params, "use_tqdm": use_tqdm,
                           "chat_template": chat_template})
        if self.poison and any(self.poison in json.dumps(conv) for conv in messages):
            raise RuntimeError("engine rejected a prompt")
        return [RequestOutput(str(i), "", [CompletionOutput(0, self.answer(conv))]) for i, conv in enumerate(messages)]
