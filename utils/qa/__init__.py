"""The QA fine-tuning pipeline of notebooks 04-05, in the order it runs.

``config``     QAConfig: every setting, its defaults per profile, the presets, training_params.json
``data``       SQuAD-format (and guanaco) data, Phi-2 prompts, answer-only labels, context truncation
``precision``  the fp16 overflow guard (Colab's T4) and fp32 attention
``training``   Trainer arguments, packing collators, answer-only logits, saving the adapter
``storage``    keeping the adapter between runtimes (Google Drive, the Hub) and finding it again (notebook 05)
"""
