"""Exercise checks, one module per notebook (``nb01`` ... ``nb06``), and the student edition builder.

A notebook imports its own checks: ``from utils.exercises import nb04 as checks``. ``common`` holds the
failure type every check raises; ``editions`` builds and verifies the student edition.
"""
