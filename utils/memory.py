"""Memory of QLoRA training, measured and predicted: storage of (4-bit) weights, activations kept for the backward
pass, optimizer state, peak memory of a block of code, and :func:`estimate` of a run's peak from shapes."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from utils.errors import input_error
from utils.qa.config import ALL_LINEAR, QAConfig


def param_storage_bytes(p: torch.Tensor) -> int:
    """Bytes a parameter occupies; for a bitsandbytes 4-bit weight, its packed codes plus the
    quantization constants (absmax, and under double quantization the second-level absmax)."""
    size = p.numel() * p.element_size()
    state = getattr(p, "quant_state", None)
    if state is not None:
        size += state.absmax.numel() * state.absmax.element_size()
        if getattr(state, "state2", None) is not None:
            size += state.state2.absmax.numel() * state.state2.absmax.element_size()
    return size


def double_quant_saving_bytes(p: torch.Tensor) -> int:
    """Bytes double quantization saves on one bitsandbytes 4-bit weight: each block's absmax stored as a
    1-byte code instead of a 4-byte float32 (3 bytes per block), minus the float32 second-level absmax it
    adds per 256 blocks. 0 for anything else."""
    state = getattr(p, "quant_state", None)
    if state is None or getattr(state, "state2", None) is None:
        return 0
    return 3 * state.absmax.numel() - 4 * state.state2.absmax.numel()


def model_storage_bytes(model: torch.nn.Module) -> dict[str, int]:
    """Bytes held by a model's parameters and buffers, split into trainable and frozen.

    4-bit bitsandbytes weights count as their packed uint8 storage plus their quantization
    constants (absmax, and the nested state under double quantization).
    """
    trainable = frozen = 0
    for p in model.parameters():
        size = param_storage_bytes(p)
        if p.requires_grad:
            trainable += size
        else:
            frozen += size
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return {"trainable": trainable, "frozen": frozen, "buffers": buffers,
            "total": trainable + frozen + buffers}


def saved_tensor_bytes(fn: Callable[[], Any], include_parameters: bool = True,
                       record: list | None = None) -> tuple[Any, int]:
    """Run ``fn()`` and count the bytes autograd keeps for the backward pass.

    Counted through ``torch.autograd.graph.saved_tensors_hooks``, once per storage (views of one
    tensor count once). With ``include_parameters=False`` saved parameters are left out, leaving
    the activations (what gradient checkpointing trades for recomputation). With a list as
    ``record``, each counted storage is appended to it as ``(shape, dtype name, bytes)``.

    Returns:
        ``(fn's return value, bytes)``.
    """
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if include_parameters or not isinstance(t, torch.nn.Parameter):
            key = id(t) if t.device.type == "meta" else t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
                if record is not None:
                    record.append((list(t.shape), str(t.dtype).removeprefix("torch."), t.untyped_storage().nbytes()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total


@dataclass
class PeakMemory:
    """Filled in by :func:`track_peak`: ``bytes`` is the peak during the block, ``seconds`` its wall time.

    On a GPU the peak is ``torch.cuda.max_memory_allocated`` (tensors only, reset at entry). On
    the CPU it is the process's peak resident set size, which never goes down: it measures the
    whole process up to the end of the block, so compare CPU numbers only within one run.
    """

    bytes: int = 0
    seconds: float = 0.0
    device: str = "cpu"

    @property
    def gib(self) -> float:
        return self.bytes / 2**30


@contextmanager
def track_peak() -> Iterator[PeakMemory]:
    """``with track_peak() as peak: ...`` then read ``peak.bytes`` and ``peak.seconds``."""
    result = PeakMemory(device="cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        yield result
    finally:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            result.bytes = torch.cuda.max_memory_allocated()
        else:
            result.bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
        result.seconds = time.perf_counter() - start


# ------------------------------------------------------------------------------------ estimate
OPTIMIZER_STATE_BYTES = {  # bytes of optimizer state per trainable parameter (transformers' optim names)
    "adamw_torch": 8, "adamw_torch_fused": 8, "paged_adamw_32bit": 8,  # two fp32 moments
    "adamw_bnb_8bit": 2, "adamw_8bit": 2, "paged_adamw_8bit": 2,  # two 8-bit moments (block constants ~1%)
    "sgd": 0,
}


@dataclass
class MemoryEstimate:
    """Predicted peak training memory: ``parts`` (bytes, by component) and their ``total``."""

    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    @property
    def gib(self) -> float:
        return self.total / 2**30

    def summary(self, measured: int | None = None) -> dict[str, float]:
        """Each part and the total in MiB (readable for the smoke model's few MiB and Phi-2's thousands);
        with a ``measured`` peak (bytes), also that peak and the relative ``error`` of the prediction
        (predicted / measured - 1)."""
        out = {f"{name} (MiB)": round(value / 2**20, 1) for name, value in self.parts.items()}
        out["predicted peak (MiB)"] = round(self.total / 2**20, 1)
        if measured is not None:
            out["measured peak (MiB)"] = round(measured / 2**20, 1)
            out["error"] = round(self.total / measured - 1, 4)
        return out


def _linear_shapes(config: Any) -> tuple[dict[str, tuple[int, int]], int]:
    """Per decoder layer: linear name -> (in, out) features, from a meta-device copy of the model;
    and the number of layers."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    layers = model.get_decoder().layers
    shapes = {name.rsplit(".", 1)[-1]: (m.in_features, m.out_features)
              for name, m in layers[0].named_modules() if isinstance(m, torch.nn.Linear)}
    return shapes, len(layers)


GELU_SAVED_TENSORS = {"gelu_new": 4, "gelu_pytorch_tanh": 1, "gelu": 1}  # tensors the MLP activation keeps
QUANTIZATIONS = ("nf4", "fp4", None)  # bitsandbytes' 4-bit types, or None: 16-bit weights
BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)  # bitsandbytes' 4-bit block sizes
ATTENTIONS = ("sdpa", "eager")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_estimate_args(config: Any, tokens: Any, sequences: Any, logit_tokens: Any, qa: Any, quantization: Any,
                         double_quant: Any, blocksize: Any, attention: Any) -> None:
    """:func:`estimate`'s own arguments, checked before it builds anything (see its Raises)."""
    model_type = getattr(config, "model_type", None)
    if model_type != "phi":
        raise input_error("estimate: config", f"estimate() counts the activations of Phi models (model_type 'phi'); "
                          f"got {model_type!r} ({type(config).__name__})",
                          "pass a Phi model's config (model.config, or utils.models.tiny_phi.phi2_shaped_config()); "
                          "measure other models with utils.memory.track_peak()")
    if getattr(config, "hidden_act", None) not in GELU_SAVED_TENSORS:
        raise input_error("estimate: config.hidden_act", f"unknown activation {getattr(config, 'hidden_act', None)!r}; "
                          f"known: {sorted(GELU_SAVED_TENSORS)}",
                          "add how many tensors it keeps for backward to utils.memory.GELU_SAVED_TENSORS")
    for name, value, what in (("tokens", tokens, "tokens in the largest micro-batch, padding included"),
                              ("sequences", sequences, "rows of the micro-batch, 1 when packed")):
        if not _is_count(value) or value <= 0:
            raise input_error(f"estimate: {name}", f"{name} must be a positive integer ({what}), got {value!r}",
                              f"pass e.g. {name}={4096 if name == 'tokens' else 1}; a training run's largest micro-batch "
                              "is utils.qa.training.TokenCounter.largest()")
    if sequences > tokens:
        raise input_error("estimate: sequences", f"sequences={sequences} rows cannot hold only tokens={tokens} tokens "
                          "(each row has at least one)", "pass tokens as the micro-batch's total (rows x padded length)")
    if logit_tokens is not None and (not _is_count(logit_tokens) or not 0 < logit_tokens <= tokens):
        raise input_error("estimate: logit_tokens", f"logit_tokens must be a positive integer no larger than "
                          f"tokens={tokens} (the positions the LM head runs on), got {logit_tokens!r}",
                          "pass the graded positions (TokenCounter.largest()['graded']), or None for every token")
    if qa is not None and not isinstance(qa, QAConfig):
        raise input_error("estimate: qa", f"qa must be a utils.qa.config.QAConfig, got {type(qa).__name__}",
                          "pass QAConfig.resolve(profile, ...) or single settings as keywords (lora_rank=64)")
    if quantization not in QUANTIZATIONS:
        raise input_error("estimate: quantization", f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}",
                          "pass 'nf4' (QLoRA's 4 bits), 'fp4', or None for 16-bit weights")
    if not isinstance(double_quant, bool):
        raise input_error("estimate: double_quant", f"double_quant must be True or False, got {double_quant!r}",
                          "pass True (QLoRA's default) or False")
    if not _is_count(blocksize) or blocksize not in BLOCKSIZES:
        raise input_error("estimate: blocksize", f"blocksize must be one of bitsandbytes' 4-bit block sizes "
                          f"{BLOCKSIZES}, got {blocksize!r}", "pass 64 (QLoRA's and bitsandbytes' default)")
    if attention not in ATTENTIONS:
        raise input_error("estimate: attention", f"attention must be 'sdpa' or 'eager', got {attention!r}",
                          "pass 'sdpa' (fused, no score matrix kept) or 'eager'")


def estimate(config: Any, *, tokens: int, sequences: int = 1, logit_tokens: int | None = None,
             qa: QAConfig | None = None, quantization: str | None = "nf4", double_quant: bool = True,
             blocksize: int = 64, attention: str = "sdpa", **settings: Any) -> MemoryEstimate:
    """Predict the peak GPU memory (``torch.cuda.max_memory_allocated``) of QLoRA training of a Phi model.

    The recipe is the course's (``utils.models.load_model`` + ``utils.models.adapters.add_lora``): the
    decoder's linear layers in 4 bits; embeddings, norms, biases and the LM head upcast to fp32 by
    peft's ``prepare_model_for_kbit_training``; fp32 LoRA adapters; 16-bit autocast compute. Every
    term is counted from shapes (see the comments); ``benchmarks/train_speed.py`` compares the
    prediction with the measured peak of each configuration it runs.

    The peak is reached either while the LM head's logits and their gradient exist (end of the
    forward pass) or while the first layer to go backward holds its activations and their gradients;
    the estimate takes the larger of the two on top of what lives all step long.

    Args:
        config: the model's ``PretrainedConfig`` (``model_type == "phi"``; no weights are loaded).
        tokens: tokens in the largest micro-batch, padding included (packed: their sum).
        sequences: rows of the micro-batch (1 when packed); sets the attention mask's size.
        logit_tokens: positions the LM head runs on (answer-only logits); default: ``tokens``.
        qa: the training settings (:class:`utils.qa.config.QAConfig`; default ``QAConfig()``, the full
            profile's); this reads ``lora_rank``, ``target_modules`` (names in a decoder layer),
            ``lora_dropout``, ``gradient_checkpointing``, ``offload_checkpoints``, ``fused_kernels``, ``residual_16bit``
            and ``optimizer`` (see ``OPTIMIZER_STATE_BYTES``).
        settings: single QAConfig fields replacing ``qa``'s, e.g. ``lora_rank=64``.
        quantization: ``"nf4"``/``"fp4"`` (4 bits) or None (16-bit weights).
        attention: ``"sdpa"`` (fused: no score matrix kept) or ``"eager"`` (keeps seq x seq scores).

    Returns:
        :class:`MemoryEstimate` whose ``parts`` are bytes of: ``weights`` (frozen base),
        ``lora`` (adapter weights + gradients), ``optimizer``, ``activations`` (kept for backward
        all step long) and ``transient`` (the larger of the logits phase and one layer's backward).

    Raises:
        InputError: checked before anything is built: ``config`` is not a Phi config (or lacks an activation this
            counts); ``tokens``, ``sequences`` or ``logit_tokens`` is not a positive integer, ``sequences`` or
            ``logit_tokens`` is larger than ``tokens``; ``qa`` is not a QAConfig; ``quantization``,
            ``double_quant``, ``blocksize`` (bitsandbytes' powers of two, 32 to 4096) or ``attention`` is not one
            of the values it can be; ``optimizer`` has no known state size; a target is not a linear layer of a
            decoder layer. ``settings`` are checked like :meth:`QAConfig.replace` (:class:`ConfigError`, an
            InputError: e.g. ``target_modules="q_proj"``, a string, not a list).
    """
    _check_estimate_args(config, tokens, sequences, logit_tokens, qa, quantization, double_quant, blocksize,
                         attention)
    qa = (qa or QAConfig()).replace(**settings)
    lora_rank, lora_targets, lora_dropout = qa.lora_rank, qa.target_modules, qa.lora_dropout
    fused, res_bytes = qa.fused_kernels, 2 if qa.residual_16bit else 4  # utils.models.forward_patches' levers
    gradient_checkpointing, optimizer = qa.gradient_checkpointing, qa.optimizer
    if optimizer not in OPTIMIZER_STATE_BYTES:
        raise input_error("estimate: optimizer", f"unknown optimizer {optimizer!r}: its state size per parameter is "
                          f"not known; known: {sorted(OPTIMIZER_STATE_BYTES)}",
                          "pass one of those (optimizer='adamw_torch' for 32-bit AdamW, 'paged_adamw_8bit' for "
                          "QLoRA's), or add its bytes per parameter to utils.memory.OPTIMIZER_STATE_BYTES")
    shapes, n_layers = _linear_shapes(config)
    targets = sorted(shapes) if lora_targets == (ALL_LINEAR,) else list(lora_targets)
    unknown = sorted(set(targets) - set(shapes))
    if unknown:
        raise input_error("estimate: target_modules", f"target_modules {unknown} are not linear layers of a decoder "
                          f"layer; choose from {sorted(shapes)}",
                          f"pass names from that list (or ({ALL_LINEAR!r},) for all of them)")
    h, inter, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    logit_tokens = tokens if logit_tokens is None else logit_tokens
    seq = tokens / sequences

    # Frozen weights: 4-bit codes + block constants (8-bit + fp32 per 256 blocks with double
    # quantization, else fp32) for decoder linears; everything else fp32 after peft's upcast.
    n_linear = n_layers * sum(i * o for i, o in shapes.values())
    if quantization:
        constants = n_linear / blocksize * (1 + 4 / 256) if double_quant else n_linear / blocksize * 4
        linear_bytes = n_linear / 2 + constants
    else:
        linear_bytes = n_linear * 2
    n_other = (2 * vocab * h + vocab  # embeddings, LM head (+ bias)
               + n_layers * (2 * h + sum(o for _, o in shapes.values()))  # layer norm, linear biases
               + 2 * h)  # final norm
    n_embed = 2 * vocab * h + vocab  # with residual_16bit stored in 16 bits again (utils.models.forward_patches)
    weights = linear_bytes + 4 * (n_other - n_embed) + res_bytes * n_embed
    n_lora = n_layers * lora_rank * sum(shapes[t][0] + shapes[t][1] for t in targets)

    # Per token, what autograd keeps for one decoder layer.
    per_token = res_bytes * h  # the layer's input (the residual stream), kept by its layer norm
    if fused:
        # 16-bit norm outputs: the layer's linear layers compute on 16-bit inputs and return 16-bit outputs; the
        # adapters of q/k/v/fc1 share one saved 16-bit input (the norm's output), dense and fc2 get theirs from
        # the attention and the MLP activation; the one-kernel GELU keeps its 16-bit input alone
        per_token += 2 * (2 * h + inter)
        act_bytes, grad_bytes = 2 * inter, 2
    else:
        # the norm returns float32 under autocast and bitsandbytes returns its output in its input's dtype, so the
        # linear layers' outputs (and the MLP activation computed on them) are fp32; each adapter keeps its own
        # 16-bit copy of its input (A's gradient)
        per_token += sum(2 * shapes[t][0] for t in targets)
        act_bytes, grad_bytes = GELU_SAVED_TENSORS[config.hidden_act] * 4 * inter, 4  # (gelu_new: 4 tensors)
    if lora_dropout > 0:
        per_token += sum(shapes[t][0] for t in targets)  # the adapters' dropout masks (1 byte per input)
    per_token += 4 * 2 * h  # attention kernel: q, k, v and output in 16 bits
    per_token += 2 * seq  # the attention mask, rebuilt per layer: seq x seq 16-bit values per sequence
    per_token += act_bytes  # the MLP activation's saved tensors
    per_token += 2 * h * (getattr(config, "resid_pdrop", 0) > 0)  # residual dropout masks
    scores = sequences * config.num_attention_heads * seq * seq * (4 + 2) if attention == "eager" else 0
    grad_working = 3 * grad_bytes * inter  # while a layer runs backward: ~3 gradients of MLP width per token

    # with checkpointing, each layer's input (utils.models.offload: in CPU memory, but for the one being fetched back
    # and the one prefetched after it)
    checkpoints = min(2, n_layers) if qa.offload_checkpoints else n_layers
    kept = checkpoints * tokens * res_bytes * h if gradient_checkpointing else n_layers * (tokens * per_token + scores)
    # in backward: the gradient working set, eager attention's score gradients (as large as the scores), and
    # with checkpointing the layer's recomputed activations
    layer_backward = tokens * grad_working + scores + (tokens * per_token + scores if gradient_checkpointing else 0)
    logits = logit_tokens * vocab * (2 + 4 + 4 + 4)  # 16-bit logits, fp32 copy, log-softmax, its gradient
    parts = {
        "weights": weights, "lora": 8 * n_lora, "optimizer": OPTIMIZER_STATE_BYTES[optimizer] * n_lora,
        "activations": kept, "transient": max(layer_backward, logits),
    }
    return MemoryEstimate({k: int(v) for k, v in parts.items()})


def full_profile_phi2(answer_share: float | None = None) -> tuple[MemoryEstimate, dict[str, int]]:
    """:func:`estimate` for one training pass of the full profile's settings on microsoft/phi-2's shapes (no weights
    loaded): the pass holds ``batch_size`` rows of ``row_length`` tokens (every pass has that shape), or with
    ``row_length == 0`` ``batch_size`` examples of at most ``max_length`` tokens in one row.

    Args:
        answer_share: the share of positions the LM head runs on with answer-only logits (a measured share of
            answer tokens); None counts every position's logits, an upper bound.
    Returns:
        the estimate, and the pass's shape: ``batch``, ``row_length``, ``max_length``, ``tokens``.
    """
    from utils.models.tiny_phi import phi2_shaped_config

    qa = QAConfig.resolve("full")
    tokens = qa.batch_size * (qa.row_length or qa.max_length)
    logit_tokens = None if answer_share is None else round(answer_share * tokens)
    predicted = estimate(phi2_shaped_config(), tokens=tokens, sequences=qa.batch_size if qa.row_length else 1,
                         logit_tokens=logit_tokens, qa=qa)
    return predicted, {"batch": qa.batch_size, "row_length": qa.row_length, "max_length": qa.max_length,
                       "tokens": tokens}


def saved_activation_bytes(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one forward on ``batch``.

    This is the activation memory that gradient checkpointing trades for recomputation; it is
    counted exactly through ``torch.autograd.graph.saved_tensors_hooks`` (works on CPU and GPU).
    """
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    was_training = model.training
    model.train()
    loss, total = saved_tensor_bytes(lambda: model(**batch, use_cache=False).loss, include_parameters=False)
    loss.backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return total


def optimizer_state_bytes(model: torch.nn.Module, optimizer_cls: Any, **kwargs: Any) -> int:
    """Bytes of optimizer state after one step on the trainable parameters (e.g. AdamW vs 8-bit AdamW)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = optimizer_cls(params, **kwargs)
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    total = sum(t.numel() * t.element_size() for state in optimizer.state.values()
                for t in state.values() if torch.is_tensor(t))
    for p in params:
        p.grad = None
    return total
