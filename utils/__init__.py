"""The course's shared package: every notebook imports what it needs from here, laid out as the course runs.

``lessons``      the core ideas written from scratch (quantizers, LoRA layers), tested against the libraries
``models``       loading (4-bit or not), peft adapters, the smoke profile's tiny models
``qa``           the QA fine-tuning pipeline: settings, data, fp16 guard, training
``classification``  notebook 06's pipeline: your labelled text, four fine-tuning methods
``evaluation``   SQuAD EM/F1, QA answers and merging, quantization error of whole models
``experiments``  the rank ablation and its scores, the notebook sweep, notebook 06's learning curve
``exercises``    each notebook's exercise checks
``cli``          the learner's commands (``python -m utils.cli.course``, ``finetune``, ``sweep``, ``export``)
``files`` (reading a user's data files), ``errors`` (their InputError), ``memory``, ``run_mode`` (smoke or full),
``lock``, ``paths`` (folders, cache, records), ``plots``, ``notebooks``, ``bnb_cpu``, ``colab``, ``progress``,
``quiet``: what they say

Maintainer tooling (README rendering, the student edition, publishing, grading) is the ``tools`` package beside
this one: it imports ``utils``, never the reverse.
"""

from utils.bnb_cpu import quiet_optional_kernel_message
from utils.quiet import quiet_known_messages

# before anything imports bitsandbytes: drop its one message about an optional CPU kernel (see utils.bnb_cpu)
quiet_optional_kernel_message()
quiet_known_messages()  # library warnings a learner cannot act on, each by its exact text (see utils.quiet)
