"""The course's Gradio demo: paste a context, ask a question, get Phi-2 + LoRA's answer."""
