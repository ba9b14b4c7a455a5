"""Imported at start-up by every Python process whose PYTHONPATH holds this folder (the notebooks' kernels
in benchmarks/notebooks_on_gpu.py --t4): torch reports no bf16, as on Colab's T4, so the course picks fp16
everywhere (utils.models.compute_dtype, the Trainer's mixed precision)."""

import torch

torch.cuda.is_bf16_supported = lambda *args, **kwargs: False
