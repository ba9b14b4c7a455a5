"""Experiments that run a lesson many times: the rank ablation and the notebook sweep, with their tables and plots.

``ablation``  notebook 03's grid of (variant, rank, seed) QLoRA classifiers
``sweep``     any notebook re-run over a parameter grid with papermill; summaries and plots
"""
