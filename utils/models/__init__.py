"""Models: loading (the Hub path kept, one offline fallback), LoRA adapters through peft, small test models.

``loading``   load_model, bnb_4bit_config, compute_dtype, the model ids (re-exported here: the notebooks
              write ``from utils.models import load_model``)
``architectures``  what differs between model families (LoRA targets, prompt style, end/pad tokens), as data
``smollm2``   SmolLM2-135M-Instruct converted once from its pip-packaged GGUF: the smoke profile's base model
``adapters``  peft LoRA with checked rank, alpha and target modules; loading a saved adapter; parameter counts
``forward_patches``  the same forward pass in fewer GPU kernels (fused GELU, LoRA added in one pass, 16-bit casts)
``qlora_linear``  a 4-bit base layer and its LoRA adapter as one autograd function (LoRA added in the products)
``rotary``    the rotary embedding applied in place (a Triton kernel on a GPU, PyTorch's operations elsewhere)
``offload``   activation checkpointing with the checkpoints in CPU memory, copied on a second CUDA stream
``tiny_phi``  a tiny random Phi (Phi-2's layer names, for unit tests) and the random-weight Phi-2-shaped model of the benchmarks
"""

from utils.models.loading import (
    MINILM_ID,
    PHI2_ID,
    auto_class_for,
    bnb_4bit_config,
    compute_dtype,
    load_model,
    load_tokenizer,
    mixed_precision,
    resolve_model_path,
)
from utils.models.smollm2 import SMOLLM2_ID

__all__ = ["MINILM_ID", "PHI2_ID", "SMOLLM2_ID", "auto_class_for", "bnb_4bit_config", "compute_dtype", "load_model", "load_tokenizer",
           "mixed_precision",
           "resolve_model_path"]
