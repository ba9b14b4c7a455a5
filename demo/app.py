"""Question-answering demo, like the original course's Hugging Face Space: base model + LoRA adapter.

    python -m demo.app                                   # adapter from notebook 04 (outputs/<model>-qa-adapter)
    python -m demo.app --adapter outputs/phi-2-qa-adapter --share

The base model is the one notebook 04 trained on (recorded in ``training_params.json``: Phi-2 in the full
profile, SmolLM2-135M-Instruct in smoke), loaded in 4-bit NF4 like in training; the adapter is applied on top,
unmerged, and questions are asked in that model's prompt format. :func:`predict` is plain Python
(tested in tests/test_qa_demo.py); gradio is imported only when the app is built.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXAMPLE_CONTEXT = ("Brindlemoor is a small town on the river Oss. It was founded in 1342 by a miller named "
                   "Edda Varn. Its flag shows a grey heron.")
EXAMPLE_QUESTION = "Who founded Brindlemoor?"


def default_adapter() -> Path:
    """Where notebook 04 saves the adapter of the profile's base model (``utils.qa.storage.default_adapter_dir``)."""
    from utils.qa.config import QAConfig
    from utils.qa.storage import default_adapter_dir
    from utils.run_mode import get_profile

    return default_adapter_dir(QAConfig.resolve(get_profile()).model_id)


def load(adapter_dir: str | Path, quantized: bool = True) -> tuple[Any, Any, Any]:
    """(model, tokenizer, the QAConfig it was trained with) for an adapter folder written by notebook 04."""
    from transformers import AutoTokenizer

    from utils.models import bnb_4bit_config
    from utils.models.adapters import load_adapter
    from utils.qa.run_folder import read_training_params

    config, _ = read_training_params(adapter_dir)  # clear error if notebook 04 has not been run
    model = load_adapter(config.model_id, adapter_dir, bnb_4bit_config() if quantized else None)
    return model, AutoTokenizer.from_pretrained(adapter_dir), config


def predict(context: str, question: str, model: Any, tokenizer: Any, max_new_tokens: int = 32,
            max_length: int = 512) -> str:
    """The model's answer (greedy) to ``question`` about ``context``; long contexts are truncated."""
    from utils.evaluation.qa import generate_answers

    if not question or not question.strip():
        raise ValueError("Ask a question (the question box is empty).")
    if not context or not context.strip():
        raise ValueError("Paste a context: the model answers from the text you give it.")
    row = {"question": question, "context": context, "answers": None}
    return generate_answers(model, tokenizer, [row], max_new_tokens, max_length, progress=False)[0]


def build_app(model: Any, tokenizer: Any, max_length: int = 512, model_name: str = "Phi-2") -> Any:
    """The Gradio interface (gradio imported here only); ``model_name`` is the base model shown in its title."""
    import gradio as gr

    def answer(context: str, question: str) -> str:
        try:
            return predict(context, question, model, tokenizer, max_length=max_length)
        except ValueError as err:
            raise gr.Error(str(err)) from err

    return gr.Interface(
        fn=answer,
        inputs=[gr.Textbox(label="Context", lines=8, placeholder="Paste a paragraph"),
                gr.Textbox(label="Question")],
        outputs=gr.Textbox(label="Answer"),
        title=f"{model_name} + QLoRA question answering",
        description=f"{model_name} (4-bit NF4) with the LoRA adapter trained in notebook 04 of the QLoRA course. "
                    "The answer comes from the context you paste.",
        examples=[[EXAMPLE_CONTEXT, EXAMPLE_QUESTION]],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default=str(default_adapter()), help="adapter folder from notebook 04")
    parser.add_argument("--share", action="store_true", help="public gradio.live link (e.g. from Colab)")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    model, tokenizer, config = load(args.adapter)
    build_app(model, tokenizer, config.max_length, config.model_id.rsplit("/", 1)[-1]).launch(
        share=args.share, server_port=args.port)


if __name__ == "__main__":
    main()
