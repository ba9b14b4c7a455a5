"""Measuring what a model learned or lost.

``squad``      official SQuAD v1.1 exact match and F1, offline
``qa``         greedy answers, answer perplexity, generation speed, loading and merging an adapter
``quantized``  per-layer quantization error, fake-quantized models, output agreement, perplexity
"""
