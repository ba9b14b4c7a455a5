"""Export a merged model to one GGUF file (llama.cpp, Ollama, LM Studio) with an Ollama Modelfile, and verify it.

    from utils.export import export_gguf, verify_gguf
    files = export_gguf(merged, tokenizer, "outputs/gguf")   # <name>.q8_0.gguf + <name>.q8_0.Modelfile
    check = verify_gguf(files["gguf"], merged, [prompt_ids], tokenizer)    # reload it, compare weights and logits

``merged`` is a plain transformers causal LM in 16 or 32 bit with the LoRA adapter folded in (notebook 05's
``qa_eval.merge_check`` or ``qa_eval.merge_adapter``): a 4-bit (bitsandbytes) model or a peft model whose adapter is
not merged is refused, since llama.cpp reads plain weights.

**What the file holds** (written with the ``gguf`` package's ``GGUFWriter``, keys and tensor names as llama.cpp's
``convert_hf_to_gguf.py`` writes them and its loader reads them):

- architecture metadata: ``<arch>.context_length``, ``embedding_length``, ``feed_forward_length``, ``block_count``,
  ``attention.head_count`` / ``head_count_kv``, the norm epsilon, ``rope.dimension_count`` and ``rope.freq_base``;
- the tensors, one per weight (``token_embd``, ``blk.N.attn_q`` ...), named by ``gguf.get_tensor_name_map``;
- the tokenizer as a GPT-2 byte-level BPE vocabulary (``tokenizer.ggml.model = "gpt2"``): the tokens in id order
  (padded with ``[PADn]`` up to the embedding's rows), their types (control for special added tokens,
  user-defined for other added ones), the merges, the bos/eos/unk/pad ids, whether a BOS/EOS is added, the
  pre-tokenizer's llama.cpp name, and the chat template.

**Architectures** (:data:`SUPPORTED`): ``llama`` (SmolLM2, the smoke profile's model; verified end to end by reloading
the file with transformers) and ``phi`` (Phi-2, the full profile's; llama.cpp's ``phi2``). transformers cannot load
``phi2`` GGUF files, so a Phi-2 file is verified by reading it only: the metadata llama.cpp's phi2 loader reads, the
tensor names, shapes and types, every tensor equal to the source weight's round trip through its type, and the
tokenizer metadata; its logits are NOT verified here (llama.cpp itself would be needed).

**Rotary layout.** llama.cpp's ``llama`` rope rotates interleaved pairs of a head's dimensions, transformers'
rotates its two halves; ``convert_hf_to_gguf.py`` therefore reorders the rows of every ``q_proj`` and ``k_proj`` head
(:func:`to_llama_cpp_rotary`), and transformers' GGUF loader undoes exactly that. Phi-2 (NeoX rope) is written as is.

**Tensor types** (llama.cpp's rules: ``convert_hf_to_gguf.py`` for f16/q8_0, ``llama-quantize`` for q4_0):

- 1-D tensors (norm weights, biases) stay F32 in every file;
- ``f16``: every matrix F16;
- ``q8_0``: every matrix Q8_0 (8-bit codes + one fp16 scale per 32 weights: 8.5 bits per weight);
- ``q4_0``: every matrix Q4_0 (4-bit codes + one fp16 scale per 32: 4.5 bits per weight), except the output
  matrix (``output.weight``, or ``token_embd.weight`` when the embedding is tied to the output, as in SmolLM2),
  which llama-quantize keeps at more bits: Q6_K when its rows are a multiple of 256, else Q8_0. The ``gguf``
  package has no Q6_K quantizer, so this exporter writes Q8_0 there (what llama.cpp itself picks for SmolLM2's
  576-wide rows; for Phi-2 it is slightly larger and more precise than llama.cpp's Q6_K);
- a matrix whose rows are not a multiple of the 32-weight block stays F16 (convert_hf_to_gguf's fallback).

**Verification** (:func:`verify_gguf`) compares in two steps, as the type fixes what "equal" means:

(a) every tensor in the file, dequantized, equals the merged weight's quantize -> dequantize round trip through
    the same type (``gguf.quants``) *exactly*, and, for ``llama``, so does every weight of the model transformers
    reloads from the file (which also checks the rotary reordering against transformers' inverse);
(b) for ``llama``, logits on the given tokens: the reloaded model's must equal, within float32 rounding (``floor``,
    Higham and Mary's probabilistic bound, :func:`rounding_floor`), those of the merged model itself (its own config)
    carrying the round-trip weights: this checks every architecture setting the file holds, at any file type. And
    the rounding's own effect, reloaded vs merged, must stay within ``MEAN_FACTOR`` / ``MAX_FACTOR`` times what a
    *reference perturbation of the same size* does to the mean / max |logit difference| (plus ``floor``): the merged
    weights plus the very same per-weight rounding errors with random signs. The errors keep their magnitudes, so
    the type sets the size (f16's round-to-nearest, |e| <= 2^-11 |w|; Q4_0's blocks, |e| <= one step max|w|/8 at
    the clipped end, half a step elsewhere; Q8_0's, half of max|w|/127), and a deeper or more sensitive model moves
    its logits more for both alike. At 4 bits on a 135M model that effect is large (SmolLM2: mean |change| ~3 for
    a mean |logit| ~6.5), so this bound is coarse there; (a) and the same-weights comparison are the sharp checks,
    and ``reference_noise=False`` skips it. What the rounding does to the model's *behaviour* is measured by the
    report's ``top1_agreement`` (greedy next token, reloaded vs merged) and, in notebook 05, by the reloaded file's
    answers (:func:`load_gguf`, then ``utils.evaluation.qa.compare_answers`` against the 4-bit + adapter model).

Memory: the export holds one tensor at a time beyond the model; the check of a ``llama`` file holds two float32
copies of the model on the CPU (the reference and the reloaded one).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.errors import InputError, input_error
from utils.files import is_int

QUANTS = ("f16", "q8_0", "q4_0")  # the file types export_gguf writes
# The default file type: q8_0. On held-out questions, q4_0 lost F1 against the merged model that q8_0 kept (SmolLM2's
# QA adapter, read back and run by llama.cpp: results/2026-12-07_gguf_quality_smollm2; issue 31 saw the same on more
# questions). Phi-2's exports have not been measured so: q8_0 until a smaller type is shown to keep its F1.
DEFAULT_QUANT = "q8_0"
SUPPORTED = {"llama": "llama", "phi": "phi2"}  # transformers model_type -> llama.cpp architecture
BLOCK = 32  # weights per Q4_0 / Q8_0 block (one fp16 scale each)
# Logit changes allowed, in units of the same-size reference perturbation's (verify_gguf). A correct file's change
# is one draw of the rounding noise, the reference another, and Q4_0's errors are not quite sign-symmetric: measured
# ratios of a correct file's change to the reference's (f16, q8_0, q4_0; SmolLM2 with 2 and 30 layers; 3 inputs;
# 6 sign seeds) were 0.8-1.7 for the mean |change| and 0.5-2.0 for the max. A file whose q/k rows were not
# reordered measured 3-5x the reference on the mean (q4_0, 30 layers) and ~1000x (f16).
MEAN_FACTOR = 2.5
MAX_FACTOR = 3.0
CHATML_STOPS = ("<|im_end|>", "<|im_start|>")  # a ChatML turn ends; a new one never belongs to the answer


def _gguf():
    import gguf

    return gguf


def _qtypes() -> dict[str, Any]:
    q = _gguf().GGMLQuantizationType
    return {"f16": q.F16, "q8_0": q.Q8_0, "q4_0": q.Q4_0}


def _file_types() -> dict[str, int]:
    f = _gguf().LlamaFileType
    return {"f16": f.MOSTLY_F16, "q8_0": f.MOSTLY_Q8_0, "q4_0": f.MOSTLY_Q4_0}


# ------------------------------------------------------------------------------------------ checks
def _is_peft(model: Any) -> bool:
    """A peft model, or a transformers model carrying an (unmerged) adapter."""
    if getattr(model, "peft_config", None):
        return True
    return any(hasattr(m, "lora_A") for m in model.modules())


def _is_quantized(model: Any) -> bool:
    """bitsandbytes 4/8-bit weights (packed as integers), or any non-float parameter."""
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        return True
    return any(not p.is_floating_point() or type(p).__name__ in ("Params4bit", "Int8Params")
               for p in model.parameters())


def _rope_parameters(config: Any) -> dict[str, Any]:
    """``{"rope_theta", "rope_type"}`` under transformers 5's ``rope_parameters`` or the older attributes."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    scaling = getattr(config, "rope_scaling", None) or {}
    params.setdefault("rope_type", scaling.get("rope_type", scaling.get("type", "default")))
    return params


def _partial_rotary_factor(config: Any) -> float:
    """The share of each head's dimensions that rotary embeddings turn (Phi-2: 0.4)."""
    return float(_rope_parameters(config).get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 1.0)))


def check_exportable(model: Any) -> str:
    """The llama.cpp architecture name for ``model``, after checking it can be exported as it is.

    Raises:
        InputError: a peft model (adapter not merged), 4-bit/8-bit weights, an architecture not in
            :data:`SUPPORTED`, or a variant of one (rope scaling, biases, activation) llama.cpp would read differently.
    """
    merge_fix = ("merge the adapter into a 16-bit copy of the base first: "
                 "utils.evaluation.qa.merge_adapter(base_id, adapter_dir, torch.float16), or load the base without "
                 "quantization, apply the adapter and call model.merge_and_unload() (notebook 05's merge check)")
    if _is_peft(model):
        raise input_error("the model", "it carries a LoRA adapter that is not merged into its weights, and llama.cpp "
                          "reads plain weights", merge_fix)
    if _is_quantized(model):
        raise input_error("the model", "its weights are quantized (bitsandbytes 4-/8-bit); GGUF is written from "
                          "16- or 32-bit weights, which it quantizes itself", merge_fix)
    config = model.config
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED:
        known = ", ".join(f"{k!r} (llama.cpp {v!r})" for k, v in SUPPORTED.items())
        raise input_error(f"model_type {model_type!r}", f"the GGUF export supports {known} only",
                          "export a Llama-architecture model (e.g. SmolLM2) or Phi-2, or convert this one with "
                          "llama.cpp's convert_hf_to_gguf.py")
    rope = _rope_parameters(config)
    if rope.get("rope_type", "default") != "default":
        raise input_error(f"rope_type {rope['rope_type']!r}", "rope scaling needs metadata this exporter does "
                          "not write", "convert this model with llama.cpp's convert_hf_to_gguf.py")
    if model_type == "llama" and (getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)):
        raise input_error("a Llama model with biases", "the exporter writes bias-free Llama layers only",
                          "convert it with llama.cpp's convert_hf_to_gguf.py")
    if model_type == "phi" and (getattr(config, "qk_layernorm", False) or config.hidden_act != "gelu_new"):
        raise input_error("this Phi model", "llama.cpp's phi2 graph has no q/k layer norm and uses the tanh GELU "
                          f"(gelu_new); this one has qk_layernorm={config.qk_layernorm}, "
                          f"hidden_act={config.hidden_act!r}", "export a Phi-2 model")
    return SUPPORTED[model_type]


def _check_quant(quant: str) -> None:
    if quant not in QUANTS:
        raise input_error(f"quant {quant!r}", f"expected one of {QUANTS}",
                          "use q4_0 (4.5 bits per weight), q8_0 (8.5) or f16 (16)")


# ------------------------------------------------------------------------------------------ tensors
@dataclass(frozen=True)
class PlannedTensor:
    """One tensor of the file: its GGUF name, the merged model's parameter, its type and shape.

    ``shape`` is the PyTorch (row-major) shape, e.g. (out_features, in_features); GGUF lists it reversed.
    ``rotary_heads`` is set for Llama's q/k projections, whose rows :func:`to_llama_cpp_rotary` reorders.
    """

    name: str
    hf_name: str
    qtype: Any
    shape: tuple[int, ...]
    rotary_heads: int | None = None


def tensor_type(name: str, shape: Sequence[int], quant: str, tied_output: bool) -> Any:
    """The GGML type of one tensor in a ``quant`` file (llama.cpp's rules; the module docstring lists them)."""
    q = _gguf().GGMLQuantizationType
    if len(shape) < 2:
        return q.F32
    if quant == "f16" or shape[-1] % BLOCK:
        return q.F16
    if quant == "q4_0" and (name == "output.weight" or (tied_output and name == "token_embd.weight")):
        return q.Q8_0  # llama-quantize: Q6_K (rows % 256 == 0) or Q8_0; gguf-py cannot write Q6_K
    return _qtypes()[quant]


def _tied(model: Any) -> bool:
    out, emb = model.get_output_embeddings(), model.get_input_embeddings()
    return out is not None and out.weight.data_ptr() == emb.weight.data_ptr()


def plan_tensors(model: Any, quant: str) -> list[PlannedTensor]:
    """Every tensor the file will hold, in the merged model's order (a tied output matrix only once).

    Raises:
        InputError: a parameter has no llama.cpp name (the exporter would otherwise drop it silently).
    """
    gguf = _gguf()
    arch = check_exportable(model)
    config = model.config
    name_map = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch),
                                        config.num_hidden_layers)
    tied = _tied(model)
    heads = {"q_proj": config.num_attention_heads,
             "k_proj": getattr(config, "num_key_value_heads", None) or config.num_attention_heads}
    plans = []
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise input_error(f"parameter {hf_name!r}", f"it has no llama.cpp {arch} tensor name",
                              "export a standard model of this architecture (no extra modules)")
        leaf = hf_name.rsplit(".", 2)[-2]
        rotary = heads[leaf] if arch == "llama" and leaf in heads and hf_name.endswith(".weight") else None
        shape = tuple(tensor.shape)
        plans.append(PlannedTensor(name, hf_name, tensor_type(name, shape, quant, tied), shape, rotary))
    return plans


def to_llama_cpp_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorder a q/k projection's rows from transformers' rotary layout to llama.cpp's (``convert_hf_to_gguf``).

    transformers rotates dimension i of a head with dimension i + d/2 (two halves); llama.cpp's ``llama`` rope
    rotates 2i with 2i + 1 (pairs). Per head, row i of the first half goes to row 2i, row i of the second half to
    2i + 1. ``weight``: (heads * head_dim, in_features).
    """
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def from_llama_cpp_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of :func:`to_llama_cpp_rotary`."""
    rows = weight.shape[0]
    return weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _float32(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).numpy()


def encode_tensor(weight: np.ndarray, plan: PlannedTensor) -> np.ndarray:
    """The bytes (or F16/F32 values) the file stores for ``weight`` (float32, PyTorch layout)."""
    if plan.rotary_heads:
        weight = to_llama_cpp_rotary(weight, plan.rotary_heads)
    return _gguf().quants.quantize(np.ascontiguousarray(weight), plan.qtype)


def round_trip(weight: np.ndarray, qtype: Any) -> np.ndarray:
    """``weight`` quantized to ``qtype`` and dequantized again (float32): what a reader of the file gets back.

    Rows are quantized independently (blocks run along a row), so this commutes with the rotary row reordering.
    """
    gguf = _gguf()
    return gguf.quants.dequantize(gguf.quants.quantize(np.ascontiguousarray(weight), qtype), qtype)


# ------------------------------------------------------------------------------------------ metadata
def architecture_metadata(config: Any, arch: str) -> dict[str, tuple[Any, str]]:
    """``{key: (value, "uint32" | "float32")}`` of the architecture keys llama.cpp's loader reads for ``arch``."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = _rope_parameters(config)
    keys = {
        "context_length": (config.max_position_embeddings, "uint32"),
        "embedding_length": (config.hidden_size, "uint32"),
        "feed_forward_length": (config.intermediate_size, "uint32"),
        "block_count": (config.num_hidden_layers, "uint32"),
        "attention.head_count": (heads, "uint32"),
        "attention.head_count_kv": (getattr(config, "num_key_value_heads", None) or heads, "uint32"),
        "rope.freq_base": (float(rope["rope_theta"]), "float32"),
    }
    if arch == "llama":
        keys |= {"attention.layer_norm_rms_epsilon": (float(config.rms_norm_eps), "float32"),
                 "rope.dimension_count": (head_dim, "uint32"), "vocab_size": (config.vocab_size, "uint32")}
        if head_dim * heads != config.hidden_size:
            keys |= {"attention.key_length": (head_dim, "uint32"), "attention.value_length": (head_dim, "uint32")}
    else:  # phi2: partial rotary, the first int(head_dim * factor) dimensions of each head (as transformers does)
        keys |= {"attention.layer_norm_epsilon": (float(config.layer_norm_eps), "float32"),
                 "rope.dimension_count": (int(head_dim * _partial_rotary_factor(config)), "uint32")}
    return {f"{arch}.{k}": v for k, v in keys.items()}


def llama_cpp_pre_tokenizer(tokenizer: Any, arch: str) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer (``tokenizer.ggml.pre``), found from what it does.

    llama.cpp knows a BPE pre-tokenizer only by name and fails to load an unknown one. Two splits occur here:
    GPT-2's byte-level regex alone (Phi-2's tokenizer, and the course's SmolLM2 tokenizer as converted from its
    GGUF) -> ``"phi-2"`` / ``"gpt-2"`` (one llama.cpp type), and single digits first, then GPT-2's regex (SmolLM2's
    Hub tokenizer) -> ``"smollm"``.

    Raises:
        InputError: not a byte-level BPE tokenizer, or a split llama.cpp would do differently.
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    pre, model = state.get("pre_tokenizer") or {}, state.get("model", {})
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    byte_level = steps[-1] if kinds and kinds[-1] == "ByteLevel" else {}
    if model.get("type") == "BPE" and byte_level.get("use_regex", True) and not byte_level.get("add_prefix_space"):
        if kinds == ["ByteLevel"]:
            return "phi-2" if arch == "phi2" else "gpt-2"
        if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
            return "smollm"
    raise input_error("the tokenizer", f"its pre-tokenizer {json.dumps(pre)[:200]} (model {model.get('type')}) is not "
                      "one the exporter maps to a llama.cpp name (GPT-2's byte-level BPE split, or single digits "
                      "then that)", "convert this model with llama.cpp's convert_hf_to_gguf.py, which knows more "
                      "tokenizers")


def _merges(tokenizer: Any) -> list[str]:
    """The BPE merges as ``"left right"`` strings, in rank order (GGUF's ``tokenizer.ggml.merges``)."""
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"].get("merges") or []
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def tokenizer_metadata(tokenizer: Any, n_vocab: int, arch: str) -> dict[str, Any]:
    """The ``tokenizer.*`` keys of the file: ``{key: value}`` (ids as ints, lists as lists).

    Tokens are listed in id order up to ``n_vocab`` (the embedding's rows); ids the tokenizer does not use become
    ``[PAD<id>]`` of type unused, as llama.cpp's converter writes them. Token types: 1 normal, 3 control (special
    added tokens), 4 user-defined (other added tokens), 5 unused.

    Raises:
        InputError: the tokenizer has more tokens than the model has embedding rows.
    """
    if len(tokenizer) > n_vocab:
        raise input_error("the tokenizer", f"it has {len(tokenizer)} tokens but the model embeds {n_vocab}",
                          "pass the tokenizer the model was trained with")
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    added = {i: t for i, t in tokenizer.added_tokens_decoder.items() if i < n_vocab}
    tokens, types = [], []
    for i in range(n_vocab):
        piece = pieces[i] if i < len(pieces) else None
        tokens.append(piece if piece is not None else f"[PAD{i}]")
        types.append(5 if piece is None else (3 if added[i].special else 4) if i in added else 1)
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    meta: dict[str, Any] = {
        "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": llama_cpp_pre_tokenizer(tokenizer, arch),
        "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": types, "tokenizer.ggml.merges": _merges(tokenizer),
        "tokenizer.ggml.add_bos_token": bool(tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id]
                                             and plain[:1] != ids[:1]),
        "tokenizer.ggml.add_eos_token": bool(tokenizer.eos_token_id is not None and ids[-1:] == [tokenizer.eos_token_id]
                                             and plain[-1:] != ids[-1:]),
    }
    for key, token_id in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                          ("unknown", tokenizer.unk_token_id), ("padding", tokenizer.pad_token_id)):
        if token_id is not None:
            meta[f"tokenizer.ggml.{key}_token_id"] = int(token_id)
    if isinstance(getattr(tokenizer, "chat_template", None), str):
        meta["tokenizer.chat_template"] = tokenizer.chat_template
    return meta


# ------------------------------------------------------------------------------------------ Modelfile
_OPENING = "<|im_start|>{role}\n"  # a ChatML turn opens; the prompt ends with the assistant's opening
_TURN = _OPENING + "{content}<|im_end|>\n"  # one ChatML message


@dataclass(frozen=True)
class ChatML:
    """A ChatML chat template (``<|im_start|>role\\ncontent<|im_end|>\\n`` per message, then the assistant's turn),
    with the system prompt it inserts when a conversation has none (None: it inserts nothing)."""

    default_system: str | None

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt for ``messages``, as the Jinja template renders it with ``add_generation_prompt=True``."""
        text = ""
        if self.default_system is not None and (not messages or messages[0]["role"] != "system"):
            text += _TURN.format(role="system", content=self.default_system)
        text += "".join(_TURN.format(role=m["role"], content=m["content"]) for m in messages)
        return text + _OPENING.format(role="assistant")

    def go_template(self) -> str:
        """The same rendering as an Ollama (Go text/template) ``TEMPLATE`` over ``.Messages``."""
        default = ""
        if self.default_system is not None:
            default = ('{{- if or (not .Messages) (ne (index .Messages 0).Role "system") }}'
                       + _TURN.format(role="system", content=self.default_system) + "{{ end }}\n")
        turn = _TURN.format(role="{{ .Role }}", content="{{ .Content }}")
        return default + "{{- range .Messages }}" + turn + "{{ end }}" + _OPENING.format(role="assistant")


_PROBES = (
    [{"role": "user", "content": "Q1"}],
    [{"role": "system", "content": "S1"}, {"role": "user", "content": "Q1"}],
    [{"role": "system", "content": "S1"}, {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"},
     {"role": "user", "content": "Q2"}],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}],
)


def recognize_chatml(tokenizer: Any) -> ChatML:
    """The tokenizer's chat template as a :class:`ChatML`, recognised by rendering probe conversations.

    Raises:
        InputError: the template renders any probe differently from ChatML (another template family: the exporter
            does not translate Jinja into Ollama's Go templates in general).
    """
    def render(messages: Sequence[Mapping[str, str]]) -> str:
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    head = "<|im_start|>system\n"
    try:
        first = render(_PROBES[0])
        default = first[len(head):first.index("<|im_end|>")] if first.startswith(head) else None
        chatml = ChatML(default)
        same = all(render(p) == chatml.render(p) for p in _PROBES)
    except Exception:  # a template that refuses a probe conversation (e.g. a system turn) is not ChatML
        same, default = False, None
    if not same or (default and ('"""' in default or "{{" in default)):
        raise input_error("the tokenizer's chat template", "it is not ChatML (<|im_start|>role ... <|im_end|>), the one "
                          "chat template the exporter writes as an Ollama TEMPLATE",
                          "pass modelfile=False (the GGUF keeps the Jinja template for llama.cpp and LM Studio) and "
                          "write the Modelfile's TEMPLATE yourself")
    return chatml


def modelfile_text(gguf_name: str, tokenizer: Any, fmt: Any, max_new_tokens: int | None = None) -> str:
    """An Ollama Modelfile for ``gguf_name`` that prompts as the adapter was trained (``fmt``, a ``PromptFormat``).

    The system prompt is the course's instruction and a user message reads ``Context: ...\\nQuestion: ...``, so
    Ollama builds exactly the training prompt: the chat template ("chat" style, ChatML) or Phi-2's
    ``Instruct: ...\\nOutput:`` ("instruct"). Decoding is as the course evaluates
    (``utils.evaluation.qa.generate_answers``): greedy (temperature 0), no repetition penalty (``repeat_penalty 1``: a
    penalty above 1 lowers every token already in the prompt, and the answer is copied from the prompt's context), at most ``max_new_tokens``
    tokens (``num_predict``; default ``utils.evaluation.qa.MAX_NEW_TOKENS``), and it stops at the end token, at the
    first newline (an answer is one line; Ollama takes a quoted value as written, so the Modelfile holds a real
    newline between the quotes) and, for ChatML, at the start of a new turn.

    Raises:
        InputError: a "chat" format whose template is not ChatML (:func:`recognize_chatml`).
    """
    from utils.evaluation.qa import MAX_NEW_TOKENS
    from utils.qa.data import INSTRUCTION

    if fmt.style == "chat":
        template, stops = recognize_chatml(tokenizer).go_template(), [tokenizer.eos_token, *CHATML_STOPS]
    else:
        template = "Instruct: {{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}\nOutput:"
        stops = [tokenizer.eos_token]
    lines = [f"# Ollama: ollama create <name> -f {gguf_name.removesuffix('.gguf')}.Modelfile, then ollama run <name>",
             "# Ask as the adapter was trained: a message 'Context: <text>\\nQuestion: <question>'.",
             f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""', f'SYSTEM """{INSTRUCTION}"""',
             *(f'PARAMETER stop "{s}"' for s in dict.fromkeys([*stops, "\n"])), "PARAMETER temperature 0",
             "PARAMETER repeat_penalty 1", f"PARAMETER num_predict {max_new_tokens or MAX_NEW_TOKENS}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ export
def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    if not cleaned:
        raise input_error(f"name {name!r}", "it has no letters or digits to name the file with",
                          "pass name='my-model'")
    return cleaned


def _model_name(model: Any) -> str:
    return Path(str(getattr(model.config, "_name_or_path", "") or model.config.model_type)).name


def _write_metadata(writer: Any, values: Mapping[str, Any], kinds: Mapping[str, str] | None = None) -> None:
    kinds = kinds or {}
    for key, value in values.items():
        kind = kinds.get(key)
        if kind == "uint32" or (kind is None and key.endswith("_token_id")):
            writer.add_uint32(key, int(value))
        elif kind == "float32":
            writer.add_float32(key, float(value))
        elif isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        elif key == "tokenizer.ggml.token_type":
            writer.add_array(key, [int(v) for v in value])  # int32 array, as llama.cpp reads it
        else:
            writer.add_array(key, list(value))


def output_paths(out_dir: str | Path, name: str, quant: str) -> tuple[Path, Path]:
    """``(<out_dir>/<name>.<quant>.gguf, <out_dir>/<name>.<quant>.Modelfile)``: what :func:`export_gguf` writes."""
    _check_quant(quant)
    stem = f"{_safe_name(name)}.{quant}"
    return Path(out_dir) / f"{stem}.gguf", Path(out_dir) / f"{stem}.Modelfile"


def check_free(paths: Sequence[str | Path], overwrite: bool) -> None:
    """Refuse to replace existing files unless ``overwrite`` (the export never replaces a file unasked).

    Raises:
        InputError: names the existing files and the two ways out.
    """
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise input_error(", ".join(existing), "already exists, and the export never replaces a file unasked",
                          "pass overwrite=True (--overwrite) to replace it, or choose another output folder or name")


def export_gguf(model: Any, tokenizer: Any, out_dir: str | Path, quant: str = DEFAULT_QUANT, prompt_format: Any = None,
                name: str | None = None, overwrite: bool = False, modelfile: bool = True,
                max_new_tokens: int | None = None) -> dict[str, Any]:
    """Write ``<name>.<quant>.gguf`` and ``<name>.<quant>.Modelfile`` (Ollama) into ``out_dir``.

    Args:
        model: the merged causal LM (16 or 32 bit, no adapter, no bitsandbytes), on any device.
        tokenizer: its tokenizer (byte-level BPE; the course's, with the architecture row's end and pad tokens).
        out_dir: created if missing.
        quant: ``"q8_0"`` (8.5 bits per quantized weight; the default, :data:`DEFAULT_QUANT`), ``"q4_0"`` (4.5) or
            ``"f16"``.
        prompt_format: the ``utils.qa.data.PromptFormat`` the adapter was trained with (default: the model's row in
            ``utils.models.architectures``); the Modelfile reproduces it.
        name: the files' stem (default: the model folder's name).
        overwrite: replace existing files of the same name (refused otherwise: nothing is lost).
        modelfile: also write the Ollama Modelfile.
        max_new_tokens: the Modelfile's answer length limit (``num_predict``; default
            ``utils.evaluation.qa.MAX_NEW_TOKENS``).

    Returns:
        ``{"gguf", "modelfile", "quant", "architecture", "size_bytes", "parameters", "bits_per_weight"
        (tensor bytes * 8 / weights, all tensors), "quantized_bits_per_weight" (the ``quant``-typed matrices only),
        "tensor_types" (type name -> tensor count)}``.

    Raises:
        InputError: before anything is written: a model that cannot be exported (:func:`check_exportable`), an
            unknown ``quant``, a tokenizer or chat template the exporter cannot write, an existing file.
    """
    from utils.qa.data import prompt_format as default_format

    gguf_path, modelfile_path = output_paths(out_dir, name or _model_name(model), quant)
    arch = check_exportable(model)
    stem, out_dir = gguf_path.name.removesuffix(".gguf"), gguf_path.parent
    targets = [gguf_path] + ([modelfile_path] if modelfile else [])
    check_free(targets, overwrite)
    n_vocab = model.get_input_embeddings().weight.shape[0]
    tok_meta = tokenizer_metadata(tokenizer, n_vocab, arch)
    model_text = modelfile_text(gguf_path.name, tokenizer, prompt_format or default_format(tokenizer, model),
                                max_new_tokens) if modelfile else None
    plans = plan_tensors(model, quant)

    gguf = _gguf()
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".{stem}.gguf.partial"
    writer = gguf.GGUFWriter(partial, arch)
    try:
        writer.add_name(stem.rsplit(".", 1)[0])
        writer.add_type("model")
        writer.add_file_type(_file_types()[quant])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        arch_meta = architecture_metadata(model.config, arch)
        _write_metadata(writer, {k: v for k, (v, _) in arch_meta.items()}, {k: t for k, (_, t) in arch_meta.items()})
        _write_metadata(writer, tok_meta)
        sizes = {}
        for p in plans:  # tensor infos first, data streamed after: one tensor in memory at a time
            block, type_size = gguf.GGML_QUANT_SIZES[p.qtype]
            rows = math.prod(p.shape[:-1])
            sizes[p.name] = rows * p.shape[-1] // block * type_size
            dtype = {gguf.GGMLQuantizationType.F32: np.float32, gguf.GGMLQuantizationType.F16: np.float16}.get(p.qtype)
            if dtype is None:
                writer.add_tensor_info(p.name, (*p.shape[:-1], p.shape[-1] // block * type_size), np.dtype(np.uint8),
                                       sizes[p.name], raw_dtype=p.qtype)
            else:
                writer.add_tensor_info(p.name, p.shape, np.dtype(dtype), sizes[p.name])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        state = model.state_dict()
        for p in plans:
            writer.write_tensor_data(encode_tensor(_float32(state[p.hf_name]), p))
        writer.close()
        check_free(targets, overwrite)  # a file that appeared while writing is kept too
        os.replace(partial, gguf_path)
    finally:
        writer.close()
        partial.unlink(missing_ok=True)
    if model_text is not None:
        modelfile_path.write_text(model_text, encoding="utf-8")

    main_type = _qtypes()[quant]
    total = sum(math.prod(p.shape) for p in plans)
    main = [p for p in plans if p.qtype == main_type and len(p.shape) > 1]
    return {"gguf": str(gguf_path), "modelfile": str(modelfile_path) if modelfile else None, "quant": quant,
            "architecture": arch, "size_bytes": gguf_path.stat().st_size, "parameters": total,
            "bits_per_weight": 8 * sum(sizes.values()) / total,
            "quantized_bits_per_weight": 8 * sum(sizes[p.name] for p in main) / sum(math.prod(p.shape) for p in main),
            "tensor_types": dict(Counter(p.qtype.name for p in plans))}


# ------------------------------------------------------------------------------------------ verification
def rounding_floor(config: Any, tokens: int, scale: float, unit: float = 2.0 ** -24) -> float:
    """Rounding allowed between two evaluations of the same weights (e.g. a config value read back as float32, or an
    adapter merged into the weights instead of added after them): Higham and Mary's probabilistic bound
    2 * lam * sqrt(n) * u * scale with lam = 6, ``unit`` roundoff u (float32: 2^-24; bfloat16 2^-8, float16 2^-11:
    ``torch.finfo(dtype).eps / 2``) and n the inner dimensions on the longest path (per layer: q/k/v, head dim, tokens
    attended, output projection, the MLP's two products; then the LM head), ``scale`` the largest |logit|. In 16 bit
    the bound exceeds ``scale`` for models of a few layers already: there it says nothing."""
    heads = config.num_attention_heads
    per_layer = [config.hidden_size, config.hidden_size // heads, tokens, config.hidden_size, config.hidden_size,
                 config.intermediate_size]
    n = config.num_hidden_layers * sum(per_layer) + config.hidden_size
    return 2 * 6.0 * math.sqrt(n) * unit * scale


@dataclass
class GgufContents:
    """A GGUF file's metadata (the vocabulary and merges in full) and its tensors, undecoded.

    Read with transformers' GGUF reader: gguf-py's ``GGUFReader`` maps each of SmolLM2's ~98,000 vocabulary and
    merge strings as a separate array, about 4 s per file on one core, against 0.3 s here.
    """

    metadata: dict[str, Any]
    tensors: dict[str, Any]  # name -> (ggml type, PyTorch-order shape, raw bytes as a uint8 array)

    @classmethod
    def read(cls, path: str | Path) -> GgufContents:
        from transformers.integrations.gguf import GgufHeader, load_gguf_state_dict, read_gguf_metadata

        metadata, _ = read_gguf_metadata(str(path), ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"))
        header = GgufHeader.from_file(str(path))
        raw = load_gguf_state_dict(header)
        qtype = _gguf().GGMLQuantizationType
        return cls(metadata, {i.name: (qtype(i.ggml_type), tuple(i.shape), raw[i.name].data) for i in header.tensors})

    @staticmethod
    def architecture(path: str | Path) -> str | None:
        """``general.architecture`` of a GGUF file, read from its metadata only."""
        from transformers.integrations.gguf import read_gguf_metadata

        metadata, _ = read_gguf_metadata(str(path), ())
        return metadata.get("general.architecture")

    def dequantized(self, name: str) -> np.ndarray:
        """Tensor ``name`` as float32 in its PyTorch shape, decoded by ``gguf.quants``."""
        qtype, shape, data = self.tensors[name]
        rows = np.asarray(data).reshape(math.prod(shape[:-1]), -1)
        return _gguf().quants.dequantize(rows, qtype).reshape(shape)


def _as_sequences(tokens: Any) -> list[list[int]]:
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.tolist() if tokens.dim() > 1 else [tokens.tolist()]
    sequences = [list(map(int, s)) for s in tokens]
    if not sequences or not all(sequences):
        raise input_error("tokens", "expected one or more non-empty token id sequences",
                          "pass e.g. [tokenizer(prompt)['input_ids']]")
    return sequences


def _file_quant(contents: GgufContents) -> str | None:
    return {int(v): k for k, v in _file_types().items()}.get(contents.metadata.get("general.file_type"))


RELOADABLE = ("llama",)  # llama.cpp architectures transformers can load from a GGUF file (not phi2)


def load_gguf(gguf_path: str | Path) -> Any:
    """The model transformers builds from a GGUF file (float32, CPU, eval mode): every tensor dequantized, the
    architecture from the file's metadata. Only :data:`RELOADABLE` architectures.

    Raises:
        InputError: the file does not exist, or its architecture is one transformers cannot load (``phi2``).
    """
    from transformers import AutoModelForCausalLM

    from utils.progress import no_library_bars

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise input_error(str(gguf_path), "there is no such file", "pass the .gguf file export_gguf wrote")
    arch = GgufContents.architecture(gguf_path)
    if arch not in RELOADABLE:
        raise input_error(str(gguf_path), f"transformers cannot load llama.cpp {arch!r} files (only {RELOADABLE})",
                          "run it with llama.cpp itself, or check it with verify_gguf (weights, metadata, tokenizer)")
    with no_library_bars():
        return AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                    dtype=torch.float32).eval()


@torch.no_grad()
def _logits(model: Any, sequences: list[list[int]]) -> torch.Tensor:
    """(total tokens, vocab) float32 logits, one sequence at a time (no padding)."""
    return torch.cat([model(input_ids=torch.tensor([s]), use_cache=False).logits[0].float() for s in sequences])


def _same(got: Any, expected: Any) -> bool:
    """Metadata equality; floats as the float32 the file stores."""
    if isinstance(expected, float):
        return got is not None and np.float32(got) == np.float32(expected)
    return got == expected


def verify_gguf(gguf_path: str | Path, merged_model: Any, tokens: Any, tokenizer: Any = None,
                texts: Sequence[str] | None = None, seed: int = 0, reloaded: Any = None,
                reference_noise: bool = True) -> dict[str, Any]:
    """Check a file :func:`export_gguf` wrote against the merged model it came from (the module docstring explains
    the two steps and the tolerance). Runs on the CPU in float32.

    Args:
        gguf_path: the ``.gguf`` file.
        merged_model: the model it was exported from (any device and float dtype; it is not modified).
        tokens: token id sequences whose logits are compared (a list of lists, or a (batch, seq) tensor).
        tokenizer: the HF tokenizer; with it the file's vocabulary, merges, special ids and chat template are
            compared, and (llama) the tokenizer transformers rebuilds from the file must encode ``texts`` (default:
            the decoded ``tokens``, plus a chat prompt when there is a template) to the same ids.
        seed: of the reference perturbation's random signs.
        reloaded: the model :func:`load_gguf` built from this file, if the caller has it already (it is used, not
            modified); default: loaded here (``llama`` files only).
        reference_noise: whether to run the coarse check of step (b) (the reference perturbation of the same size).
            A caller that compares the reloaded model's answers itself (notebook 05) can skip it: ``False`` leaves
            ``max_abs_diff``, ``mean_abs_diff`` and ``top1_agreement`` measured and the tolerances out.

    Returns:
        ``metadata_ok`` (the architecture keys llama.cpp reads), ``tensors_ok`` (names, types, shapes),
        ``weights_equal`` and ``max_weight_error`` (step a, over the file's tensors and, for llama, the reloaded
        model's), ``logits_checked`` (False for phi2: transformers cannot load it), ``same_weights_max_abs_diff``
        (reloaded vs the merged model carrying the round-trip weights; allowed: ``floor``), ``max_abs_diff`` and
        ``mean_abs_diff`` of the logits with their tolerances ``tolerance`` and ``mean_tolerance`` (``MAX_FACTOR`` /
        ``MEAN_FACTOR`` times the reference perturbation's ``reference_max_abs_diff`` / ``reference_mean_abs_diff``,
        plus ``floor``), ``top1_agreement`` (the share of the ``positions`` where the reloaded model's top-1 next
        token is the merged model's), ``max_abs_logit``, ``tokenizer_metadata_ok``, ``tokenizer_ids_match``,
        ``chat_template_match``, and ``ok`` (every check made holds).
    """
    gguf_path = Path(gguf_path)
    arch = check_exportable(merged_model)
    sequences = _as_sequences(tokens)
    contents = GgufContents.read(gguf_path)
    quant = _file_quant(contents)
    if contents.metadata.get("general.architecture") != arch or quant is None:
        raise input_error(str(gguf_path), f"it is not an f16/q8_0/q4_0 {arch} file written from this model "
                          f"(architecture {contents.metadata.get('general.architecture')!r})",
                          "pass the file export_gguf wrote")
    plans = plan_tensors(merged_model, quant)
    config = merged_model.config
    report: dict[str, Any] = {"file": str(gguf_path), "quant": quant, "architecture": arch}
    report["metadata_ok"] = all(_same(contents.metadata.get(k), v)
                                for k, (v, _) in architecture_metadata(config, arch).items())
    report["tensors_ok"] = sorted(contents.tensors) == sorted(p.name for p in plans) and all(
        contents.tensors[p.name][:2] == (p.qtype, p.shape) for p in plans)
    if not report["tensors_ok"]:
        report.update(weights_equal=False, ok=False)
        return report

    check_logits = arch == "llama"
    if check_logits:
        reference = copy.deepcopy(merged_model).to("cpu", torch.float32).eval()  # the merged model, fp32, own config
        logits_merged = _logits(reference, sequences)
        if reloaded is None:
            reloaded = load_gguf(gguf_path)
        logits_gguf = _logits(reloaded, sequences)
        reloaded_state, reference_state = reloaded.state_dict(), reference.state_dict()
    source = merged_model.state_dict()
    max_error = 0.0
    for p in plans:  # (a), one tensor at a time: the file's values are exactly the round trip of the merged weights
        expected = round_trip(_float32(source[p.hf_name]), p.qtype)
        stored = contents.dequantized(p.name)
        if p.rotary_heads:
            stored = from_llama_cpp_rotary(stored, p.rotary_heads)
        max_error = max(max_error, float(np.abs(stored - expected).max()))
        if check_logits:
            expected_t = torch.from_numpy(expected)
            max_error = max(max_error, (reloaded_state[p.hf_name] - expected_t).abs().max().item())
            reference_state[p.hf_name].copy_(expected_t)  # the merged model with the file's rounded weights
    report.update(weights_equal=max_error == 0.0, max_weight_error=max_error, logits_checked=check_logits)
    if check_logits:
        logits_rounded = _logits(reference, sequences)
        diff = (logits_gguf - logits_merged).abs()
        floor = rounding_floor(config, max(map(len, sequences)), logits_merged.abs().max().item())
        report.update(max_abs_logit=logits_merged.abs().max().item(), mean_abs_logit=logits_merged.abs().mean().item(),
                      same_weights_max_abs_diff=(logits_gguf - logits_rounded).abs().max().item(),
                      max_abs_diff=diff.max().item(), mean_abs_diff=diff.mean().item(), floor=floor,
                      positions=int(diff.shape[0]),
                      top1_agreement=(logits_gguf.argmax(-1) == logits_merged.argmax(-1)).float().mean().item())
        report["logits_ok"] = report["same_weights_max_abs_diff"] <= floor
        if reference_noise:
            generator = torch.Generator().manual_seed(seed)
            for p in plans:  # (b)'s reference: the same rounding errors with random signs
                weight = torch.from_numpy(_float32(source[p.hf_name]))
                signs = torch.randint(0, 2, weight.shape, generator=generator, dtype=torch.int8) * 2 - 1
                reference_state[p.hf_name].copy_(weight + signs * (reference_state[p.hf_name] - weight))
            reference_diff = (_logits(reference, sequences) - logits_merged).abs()
            report.update(reference_max_abs_diff=reference_diff.max().item(),
                          reference_mean_abs_diff=reference_diff.mean().item())
            report["tolerance"] = MAX_FACTOR * report["reference_max_abs_diff"] + floor
            report["mean_tolerance"] = MEAN_FACTOR * report["reference_mean_abs_diff"] + floor
            report["logits_ok"] &= (report["max_abs_diff"] <= report["tolerance"]
                                    and report["mean_abs_diff"] <= report["mean_tolerance"])
        del reference, reloaded

    if tokenizer is not None:
        n_vocab = merged_model.get_input_embeddings().weight.shape[0]
        expected_tok = tokenizer_metadata(tokenizer, n_vocab, arch)
        report["tokenizer_metadata_ok"] = all(_same(contents.metadata.get(k), v) for k, v in expected_tok.items())
        template = getattr(tokenizer, "chat_template", None)
        report["chat_template_match"] = contents.metadata.get("tokenizer.chat_template") == template
        if check_logits:  # the tokenizer transformers builds from the file (the class AutoTokenizer picks for it)
            from transformers import PreTrainedTokenizerFast

            rebuilt = PreTrainedTokenizerFast.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            texts = list(texts) if texts is not None else [tokenizer.decode(s) for s in sequences]
            if template:
                texts.append(tokenizer.apply_chat_template([{"role": "user", "content": "Where is Oss?"}],
                                                           tokenize=False, add_generation_prompt=True))
            report["tokenizer_ids_match"] = all(rebuilt(t)["input_ids"] == tokenizer(t)["input_ids"] for t in texts)
            report["chat_template_match"] &= getattr(rebuilt, "chat_template", None) == template
    checks = ["metadata_ok", "tensors_ok", "weights_equal", "logits_ok", "tokenizer_metadata_ok",
              "tokenizer_ids_match", "chat_template_match"]
    report["ok"] = all(report[k] for k in checks if k in report)
    return report


# ------------------------------------------------------------------------------------------ the task check
def file_model(gguf_path: str | Path, merged_model: Any) -> torch.nn.Module:
    """The model a GGUF file holds, as a transformers model on ``merged_model``'s device and in its dtype (eval mode).

    ``llama`` files (:data:`RELOADABLE`): the model :func:`load_gguf` builds from the file. Other architectures
    (``phi2``, which transformers cannot load): a copy of ``merged_model`` carrying the file's weights, decoded from
    the file (``verify_gguf`` checks they are exactly the merged weights' round trip). Either way the weights are the
    file's; llama.cpp computes with them in its own kernels (on a CPU it also rounds each activation to 8 bits for
    the quantized products), so its answers can differ in a few tokens: ``benchmarks/gguf_quality.py`` measures
    that with llama.cpp itself. In float16 (a GPU) the decoded Q8_0 weights round to float16 once more.

    Raises:
        InputError: the file does not exist, or is not an f16/q8_0/q4_0 file of ``merged_model``'s architecture.
    """
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise input_error(str(gguf_path), "there is no such file", "pass the .gguf file export_gguf wrote")
    param = next(merged_model.parameters())
    arch = check_exportable(merged_model)
    if GgufContents.architecture(gguf_path) in RELOADABLE:
        return load_gguf(gguf_path).to(param.device, param.dtype)
    contents = GgufContents.read(gguf_path)
    quant = _file_quant(contents)
    if contents.metadata.get("general.architecture") != arch or quant is None:
        raise input_error(str(gguf_path), f"it is not an f16/q8_0/q4_0 {arch} file written from this model",
                          "pass the file export_gguf wrote")
    model = copy.deepcopy(merged_model).eval()
    state = model.state_dict()
    with torch.no_grad():
        for p in plan_tensors(merged_model, quant):
            stored = contents.dequantized(p.name)
            if p.rotary_heads:
                stored = from_llama_cpp_rotary(stored, p.rotary_heads)
            state[p.hf_name].copy_(torch.from_numpy(np.ascontiguousarray(stored)))
    return model


def task_margin(questions: int, seed_std: float | None = None,
                per_question_change: Sequence[float] | None = None) -> tuple[float, str]:
    """How many F1 points (0-100) the file may lose against the merged model it was written from, and why.

    * With the tuned F1's standard deviation over training seeds (notebook 05 measures it): twice that, the course's
      rule for a difference that is not noise: retraining with another seed moves F1 that much.
    * Otherwise (the export command has one adapter): the larger of one question's worth (``100 / questions``: one
      answer turned from right to wrong) and twice the standard error of the mean per-question F1 change
      (``per_question_change``, in points): a smaller loss cannot be told apart from which questions happened to be
      asked. A file that loses answers broadly still fails: its mean change grows faster than its standard error.
    """
    if not is_int(questions) or questions <= 0:
        raise input_error(f"questions={questions!r}", "expected a positive number of held-out questions",
                          "score the file on e.g. 32 questions")
    if seed_std is not None and math.isfinite(seed_std):
        return 2 * float(seed_std), "twice the tuned F1's standard deviation over training seeds"
    one = 100 / questions
    if per_question_change is None or len(per_question_change) < 2:
        return one, f"one question's worth of F1 (100 / {questions})"
    changes = np.asarray(per_question_change, dtype=float)
    noise = 2 * changes.std(ddof=1) / math.sqrt(len(changes))
    if noise > one:
        return float(noise), (f"twice the standard error of the mean per-question F1 change over {len(changes)} "
                              "questions (larger than one question's worth)")
    return one, f"one question's worth of F1 (100 / {questions}; above twice the change's standard error)"


def task_check(file_answers: Sequence[str], merged_answers: Sequence[str], references: Sequence[Any],
               margin: float | None = None, seed_std: float | None = None) -> dict[str, Any]:
    """The task-level check of an exported file: EM and F1 (SQuAD's, in %) of the file's answers and of the merged
    model's on the same held-out questions; ``ok`` when the file's F1 is at least the merged model's minus
    ``margin`` (default: :func:`task_margin` from ``seed_std``, the tuned F1's spread over training seeds, if it is
    finite, else from the per-question changes; ``margin_reason`` says which). Also the
    share of questions answered word for word as the merged model did.

    Raises:
        InputError: what :func:`utils.evaluation.squad.squad_scores` refuses; the two answer lists differ in length;
            a negative or non-finite ``margin``.
    """
    from utils.evaluation.squad import squad_scores

    if len(file_answers) != len(merged_answers):
        raise input_error("task_check(file_answers, merged_answers)", f"hold {len(file_answers)} and "
                          f"{len(merged_answers)} answers", "answer the same questions with both models")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float))
                               or not math.isfinite(margin) or margin < 0):
        raise input_error(f"margin={margin!r}", "expected a number of F1 points >= 0", "use e.g. margin=3.0")
    scores = {"file": squad_scores(list(file_answers), list(references)),
              "merged": squad_scores(list(merged_answers), list(references))}
    summary = {k: {"exact_match": v["exact_match"], "f1": v["f1"]} for k, v in scores.items()}
    change = summary["file"]["f1"] - summary["merged"]["f1"]
    per_question = [100 * (f - m) for f, m in zip(scores["file"]["per_question_f1"],
                                                  scores["merged"]["per_question_f1"], strict=True)]
    if margin is None:
        margin, reason = task_margin(len(file_answers), seed_std, per_question)
    else:
        reason = "given"
    same = sum(a == b for a, b in zip(file_answers, merged_answers, strict=True)) / len(file_answers)
    return {"questions": len(file_answers), **summary, "f1_change": change, "margin": float(margin),
            "margin_reason": reason, "same_answers": same, "ok": change >= -margin}


def summary_row(export: Mapping[str, Any], check: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One table row for a notebook: file, size, bits per weight and (with ``check``) the sharp checks: the file's
    weights against their round trip, the reloaded file's logits against the merged model carrying those rounded
    weights (within the float32 ``floor``), and the share of positions where its top-1 next token is the merged
    model's."""
    row = {"file": Path(export["gguf"]).name, "size MB": export["size_bytes"] / 1e6,
           "bits/weight": export["bits_per_weight"], "quantized bits/weight": export["quantized_bits_per_weight"]}
    if check is not None:
        row |= {"weights exact": check.get("weights_equal"),
                "same weights max |Δlogit|": check.get("same_weights_max_abs_diff"), "floor": check.get("floor"),
                "top-1 as merged": check.get("top1_agreement"), "ok": check["ok"]}
    return row


__all__ = ["QUANTS", "RELOADABLE", "SUPPORTED", "ChatML", "InputError", "PlannedTensor", "check_exportable",
           "check_free", "export_gguf", "file_model", "from_llama_cpp_rotary", "load_gguf", "modelfile_text", "output_paths",
           "plan_tensors", "recognize_chatml", "round_trip", "summary_row", "tensor_type", "to_llama_cpp_rotary",
           "task_check", "task_margin", "tokenizer_metadata", "verify_gguf"]
