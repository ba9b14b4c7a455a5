"""Save a random-weight Phi-architecture model (head_dim 80, partial rotary 0.4, as Phi-2) with a
tokenizer, so the `full` code path of a notebook can run on a GPU that cannot reach the Hub.

    python benchmarks/random_phi_model.py OUT_DIR TOKENIZER_DIR [--layers 8 --hidden 1280]

Quality numbers from such a model (perplexity, accuracy) are meaningless: it has random weights.
"""

import argparse

import torch
from transformers import AutoTokenizer, PhiConfig, PhiForCausalLM

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("out_dir")
parser.add_argument("tokenizer_dir", help="any tokenizer folder, e.g. the packaged MiniLM's")
parser.add_argument("--layers", type=int, default=8)
parser.add_argument("--hidden", type=int, default=1280, help="a multiple of 80 (head_dim 80)")
args = parser.parse_args()

torch.manual_seed(0)
config = PhiConfig(vocab_size=51200, hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                   num_hidden_layers=args.layers, num_attention_heads=args.hidden // 80,
                   partial_rotary_factor=0.4, max_position_embeddings=2048)
config.architectures = ["PhiForCausalLM"]
PhiForCausalLM(config).to(torch.float16).save_pretrained(args.out_dir)
AutoTokenizer.from_pretrained(args.tokenizer_dir).save_pretrained(args.out_dir)
