"""Models: loading (the Hub path kept, one offline fallback), LoRA adapters through peft, small test models.

``loading``   load_model, bnb_4bit_config, compute_dtype, the model ids (re-exported here: the notebooks
              write ``from utils.models import load_model``)
``adapters``  peft LoRA with checked rank, alpha and target modules; parameter counts
``tiny_phi``  the smoke profile's tiny Phi and the random-weight Phi-2-shaped model of the benchmarks
"""

from utils.models.loading import (
    MINILM_ID,
    PHI2_ID,
    auto_class_for,
    bnb_4bit_config,
    compute_dtype,
    load_model,
    mixed_precision,
    resolve_model_path,
)

__all__ = ["MINILM_ID", "PHI2_ID", "auto_class_for", "bnb_4bit_config", "compute_dtype", "load_model", "mixed_precision",
           "resolve_model_path"]
