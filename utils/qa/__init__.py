"""The QA fine-tuning pipeline of notebooks 04-05, in the order it runs.

``config``     QAConfig: every setting, its defaults per profile, the presets, training_params.json
``data``       SQuAD-format (and guanaco) data, Phi-2 prompts, answer-only labels, context truncation
``precision``  the fp16 overflow guard (Colab's T4) and fp32 attention
``collate``    batching examples into packed rows (or padded, the baseline) and the tokens each way costs
``loss``       the answer-only loss: the LM head only where the next token is graded
``training``   Trainer arguments, the Trainer, train_qa end to end, step timing
``run_folder`` a run's folder: saving the adapter and training_params.json, checkpoints, resume/overwrite checks
``storage``    keeping the adapter between runtimes (Google Drive, the Hub) and finding it again (notebook 05)
"""
