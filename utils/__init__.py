"""Shared helpers for the QLoRA course notebooks.

Modules are imported explicitly (``from utils import quant``) so that a notebook pulls in only
what it uses: ``profile`` (smoke/full), ``quant`` (4-bit quantizers from scratch), ``models``
(loading), ``report`` (key figures as JSON), ``plots``.
"""

from utils.bnb_cpu import quiet_optional_kernel_message

# before anything imports bitsandbytes: drop its one message about an optional CPU kernel (see utils.bnb_cpu)
quiet_optional_kernel_message()
