"""Notebook 04's QLoRA training as a command, for long runs, rank sweeps and several GPUs.

    python -m utils.train_qa --output-dir outputs/phi2-qa-adapter            # one GPU (or CPU in smoke)
    accelerate launch --num_processes 2 -m utils.train_qa --output-dir ...   # data-parallel on 2 GPUs

It runs the same code as the notebook (``utils.qa_data``, ``utils.models``, ``utils.adapters``,
``utils.qa_train``) with the notebook's full-profile defaults; every flag is one of its constants.
Under ``accelerate launch`` each process loads its own 4-bit copy on its own GPU, trains on its share
of every batch, and gradients are averaged (DDP); ``--batch-size`` is per process. The main process
saves the adapter and ``training_params.json`` (with the world size) for notebook 05.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from utils.profile import get_profile

TARGETS = ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from utils.models import PHI2_ID

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=PHI2_ID, help="Hub id or folder of the base model")
    p.add_argument("--dataset", default="rajpurkar/squad", help="SQuAD JSON file or Hub id")
    p.add_argument("--split", default="train", help="Hub split to train on")
    p.add_argument("--train-size", type=int, default=3200, help="questions trained on (seeded subset); 0: all")
    p.add_argument("--max-length", type=int, default=384, help="tokens per example")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank r")
    p.add_argument("--alpha", type=float, default=32, help="LoRA alpha (updates scaled by alpha / r)")
    p.add_argument("--dropout", type=float, default=0.05, help="dropout on the LoRA input")
    p.add_argument("--targets", nargs="+", default=TARGETS, help="linear layers that get LoRA")
    p.add_argument("--learning-rate", type=float, default=2e-4, help="peak learning rate")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps")
    p.add_argument("--batch-size", type=int, default=32, help="examples per forward pass and process (packed)")
    p.add_argument("--grad-accum", type=int, default=1, help="forward passes per optimizer step")
    p.add_argument("--optimizer", default="paged_adamw_8bit", help="transformers optim name")
    p.add_argument("--precision", default="auto", help="auto, bf16, fp16 or fp32")
    p.add_argument("--no-checkpointing", action="store_true", help="keep activations instead of recomputing")
    p.add_argument("--full-logits", action="store_true", help="run the LM head on every position")
    p.add_argument("--pack-multiple", type=int, default=256, help="pad each packed row to a multiple of this")
    p.add_argument("--save-steps", type=int, default=100, help="checkpoint every N steps")
    p.add_argument("--output-dir", required=True, help="where the adapter (and checkpoints/) go")
    p.add_argument("--seed", type=int, default=0, help="seeds everything random")
    args = p.parse_args(argv)
    if args.steps <= 0 or args.batch_size <= 0 or args.grad_accum <= 0:
        p.error(f"--steps, --batch-size and --grad-accum must be positive, got {args.steps}, {args.batch_size}, "
                f"{args.grad_accum}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from utils import qa_data, qa_train
    from utils.adapters import add_lora, check_lora_args
    from utils.models import bnb_4bit_config, load_model

    check_lora_args(args.rank, args.alpha, args.dropout)
    set_seed(args.seed)
    profile = get_profile()
    rows = qa_data.load_qa_split(args.dataset, args.split, limit=args.train_size or None, seed=args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    features, counts = qa_data.encode_rows(rows, tokenizer, args.max_length, source=args.dataset)
    model = load_model(args.model, AutoModelForCausalLM, bnb_4bit_config())
    model = add_lora(model, args.rank, args.alpha, args.targets, dropout=args.dropout, task_type="CAUSAL_LM",
                     gradient_checkpointing=not args.no_checkpointing)
    out = Path(args.output_dir)
    targs = qa_train.training_arguments(
        out / "checkpoints", max_steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum,
        learning_rate=args.learning_rate, optimizer=args.optimizer, precision=args.precision,
        gradient_checkpointing=not args.no_checkpointing, save_steps=args.save_steps, seed=args.seed)
    collator = qa_train.packing_collator(tokenizer.eos_token_id, args.pack_multiple)
    trainer = qa_train.make_trainer(model, targs, features, collator=collator, answer_logits_only=not args.full_logits)
    result = trainer.train()
    summary = {"world_size": trainer.args.world_size, "steps": trainer.state.global_step,
               "seconds": result.metrics["train_runtime"], "losses": qa_train.loss_history(trainer)[1],
               "examples": counts, "device": str(next(model.parameters()).device)}
    if trainer.is_world_process_zero():
        params = {"model_id": args.model, "profile": profile, **{k: v for k, v in vars(args).items()
                                                                  if k != "output_dir"}, **summary}
        qa_train.save_adapter(model, tokenizer, out, params)
        print(json.dumps({k: v for k, v in summary.items() if k != "losses"}), flush=True)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return summary


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
