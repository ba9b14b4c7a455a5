"""Experiments that run a lesson many times: the rank ablation, the notebook sweep, their scores, the learning curve.

``ablation``        notebook 03's grid of (variant, rank, seed) QLoRA classifiers, trained and scored
``scores``          those scores per configuration: mean +- std over seeds (a table) and against the rank (a plot)
``sweep``           any notebook re-run over a parameter grid with papermill, its results combined in one table
``learning_curve``  notebook 06's methods trained on more and more labelled rows
"""
