"""Maintainer tooling, beside the course package: it imports ``utils``; ``utils`` never imports it.

``readme``           the README's generated blocks from the committed records (``python -m tools.readme``)
``troubleshooting``  the README's table of bad inputs and their messages, produced by running them
``editions``         the exercise section's cell tags, its check, and publishing for a fork (``python -m tools.editions``)
``publish``          what ``editions publish`` rewrites: publish.json, every Colab cell, the README's badges
``classroom``        assignments with otter-grader: release, publish, grade in a sandbox, export
                     (``python -m tools.classroom``)
"""
