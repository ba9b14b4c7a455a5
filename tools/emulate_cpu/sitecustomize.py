"""Emulate a CPU without ``avx512_bf16`` for bitsandbytes, on one that has it (the README's Tests section).

Python imports ``sitecustomize`` at start-up from any folder on ``PYTHONPATH``; this one hooks the import of
``bitsandbytes.cextension`` so that its native library reports ``has_avx512bf16_cpu() == False``, and bitsandbytes
takes the code path of such CPUs. torch and oneDNN are held to AVX2 by environment variables. The whole suite:

    PYTHONPATH=tools/emulate_cpu ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ./run.sh test
"""

import importlib.abc
import importlib.machinery
import sys


class _NoAvx512Bf16(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201
        if name != "bitsandbytes.cextension":
            return None
        sys.meta_path.remove(self)  # find the real module, then wrap its loader
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        original = spec.loader.exec_module

        def exec_module(module):  # noqa: ANN001, ANN202
            original(module)
            if getattr(module, "lib", None) is not None and hasattr(module.lib, "has_avx512bf16_cpu"):
                module.lib.has_avx512bf16_cpu = lambda: False

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _NoAvx512Bf16())
