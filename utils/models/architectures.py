"""What differs between base models, kept as data: one row per architecture, no branches elsewhere.

A decoder LLM's linear layers have different names in different families, it expects its own prompt format,
and it ends an answer with its own token. The QA pipeline (notebooks 04 and 05, ``python -m utils.cli.finetune``,
the demo) reads those three things from :data:`ARCHITECTURES`, looked up by the model's ``config.model_type``.

To fine-tune another family, add a row, e.g. in a notebook::

    from utils.models.architectures import ARCHITECTURES, Architecture
    ARCHITECTURES["qwen2"] = Architecture(
        lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        prompt_style="chat", eos_token="<|im_end|>", pad_token="<|endoftext|>")

(``print(model)`` shows the linear layers' names; the model card shows its prompt format and end token.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROMPT_STYLES = ("instruct", "chat")


@dataclass(frozen=True)
class Architecture:
    """One model family's row.

    Attributes:
        lora_targets: leaf names of the linear layers in a decoder block that get LoRA (QLoRA: all of them).
        prompt_style: ``"instruct"`` (Phi-2's documented ``Instruct: ... Output:`` text) or ``"chat"`` (the
            tokenizer's own chat template, for instruction-tuned chat models).
        eos_token: the token that ends an answer; training appends it, generation stops at it.
        pad_token: the token batches are padded with (decoder LLMs often ship without one).
    """

    lora_targets: tuple[str, ...]
    prompt_style: str
    eos_token: str
    pad_token: str


ARCHITECTURES: dict[str, Architecture] = {
    # microsoft/phi-2 (full profile) and the tiny random Phi of the unit tests
    "phi": Architecture(lora_targets=("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"),
                        prompt_style="instruct", eos_token="<|endoftext|>", pad_token="<|endoftext|>"),
    # HuggingFaceTB/SmolLM2-135M-Instruct (smoke profile): a Llama; <|im_end|> closes a chat turn
    "llama": Architecture(lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                          prompt_style="chat", eos_token="<|im_end|>", pad_token="<|im_end|>"),
}


def architecture_of(model_or_config: Any) -> Architecture:
    """The row for a model (or its config, or a peft model), looked up by ``config.model_type``.

    Raises:
        KeyError: no row for that model type; the message says how to add one.
    """
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise KeyError(f"the course has no row for model_type {model_type!r} (it knows {sorted(ARCHITECTURES)}); "
                       "add one to utils.models.architectures.ARCHITECTURES with its LoRA target layer names, "
                       "prompt style and end/pad tokens (see that module's docstring).")
    return ARCHITECTURES[model_type]


def prepare_tokenizer(tokenizer: Any, architecture: Architecture) -> Any:
    """Set the row's EOS and pad tokens on ``tokenizer`` (in place; returned for chaining).

    Raises:
        ValueError: a token of the row is not in the tokenizer's vocabulary, or a chat-style row meets a
            tokenizer without a chat template.
    """
    vocab = tokenizer.get_vocab()
    for role in ("eos_token", "pad_token"):
        token = getattr(architecture, role)
        if token not in vocab:
            raise ValueError(f"the architecture row's {role} {token!r} is not in this tokenizer's vocabulary; "
                             "set the row's tokens to the ones its model card names.")
        setattr(tokenizer, role, token)
    if architecture.prompt_style == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ValueError("the architecture row says prompt_style='chat' but this tokenizer has no chat template "
                         "(a base, not an instruction-tuned, checkpoint?); use prompt_style='instruct'.")
    return tokenizer
