"""Exercise checks, one module per notebook (``nb01`` ... ``nb06``).

A notebook imports its own checks: ``from utils.exercises import nb04 as checks``. Each checker of a function takes
``hidden=True`` for a classroom's hidden test (other inputs). ``common`` holds the failure type every check raises
and the multiple-choice questions, whose answer keys lie in ``answers/`` (not in a module: a classroom release,
``python -m tools.classroom release``, leaves them out).
"""
