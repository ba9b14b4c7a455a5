#!/usr/bin/env bash
# On a lent GPU machine (no network): unpack the two Python sites the speed benchmarks carry (one call, 33 MB):
#   /tmp/site          the course's lock versions the machine lacks: transformers 5.24.0, peft 0.21.2,
#                      bitsandbytes 0.50.2 (its CPU and CUDA 13.0 libraries only), tokenizers, datasets, trl 1.16.0
#   /tmp/unsloth_site  Unsloth 2026.10.9 and what it pins against the machine's own transformers 5.17.0: unsloth_zoo,
#                      trl 1.15.0, datasets 4.8.5, torchao 0.18.0, tyro, cut_cross_entropy, msgspec, bitsandbytes 0.50.2
#                      (Unsloth's browser "studio" and the optional hf_transfer downloader left out)
# Built here with `pip install --no-deps --only-binary=:all: --python-version 3.12 --target DIR <wheels>` (see
# benchmarks/README.md), then `tar czf .carry/gpu_<site>.tgz -C DIR .`. Then: PYTHONPATH=/tmp/site python3 ...
set -euo pipefail
mkdir -p /tmp/site /tmp/unsloth_site
tar xzf .carry/gpu_course.tgz -C /tmp/site
tar xzf .carry/gpu_unsloth.tgz -C /tmp/unsloth_site
PYTHONPATH=/tmp/site python3 -c "import torch, transformers, peft, bitsandbytes, trl; print('course site: torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__, 'trl', trl.__version__, torch.cuda.get_device_name())"
