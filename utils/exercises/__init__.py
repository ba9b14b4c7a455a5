"""Exercise checks, one module per notebook (``nb01`` ... ``nb06``).

A notebook imports its own checks: ``from utils.exercises import nb04 as checks``. ``common`` holds the
failure type every check raises; the student edition is built by ``tools.editions``.
"""
