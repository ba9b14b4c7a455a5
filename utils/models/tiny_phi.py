"""A tiny, randomly initialised Phi model and an offline tokenizer, for the smoke profile.

The smoke profile must run the same code as the full one (4-bit loading, LoRA, training, saving,
evaluation) without the Hub. :func:`ensure_tiny_phi` writes a ``PhiForCausalLM`` of Phi-2's
architecture (partial rotary embeddings, parallel attention/MLP blocks, the same linear layer
names) but a few hundred thousand parameters, plus a byte-level BPE tokenizer trained on texts the caller
gives (the QA tests pass the course's QA prompts and answers, :func:`utils.qa.data.qa_texts`), into a folder that
``from_pretrained`` reads like a Hub checkpoint. Everything is seeded, so the same texts give the same model.

:func:`phi2_shaped_config` gives the real Phi-2 sizes, used on a GPU to measure memory and speed
with random weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import PhiConfig, PhiForCausalLM, PreTrainedTokenizerFast

from utils.paths import build_folder_once

EOS = "<|endoftext|>"  # Phi-2's (CodeGen's) one special token: bos, eos and unk at once
TINY_SIZES = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 512}
# Weights drawn with std 0.2 rather than Phi-2's 0.02: with a random, frozen output layer of std 0.02 the
# largest reachable logit is about 0.02 * ||h|| ~ 0.2 * sqrt(hidden) / ... i.e. tiny, and no adapter could make
# the model confident about anything; 0.2 lets a LoRA adapter actually learn answers in the smoke run.
TINY_INIT_STD = 0.2


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (Phi-2's kind, smaller vocabulary) trained on ``texts``; deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS)


def tiny_phi_config(vocab_size: int, **sizes: int) -> PhiConfig:
    """Phi-2's configuration with small sizes (override any of :data:`TINY_SIZES`)."""
    sizes = TINY_SIZES | sizes
    return PhiConfig(vocab_size=vocab_size, partial_rotary_factor=0.4, max_position_embeddings=1024,
                     initializer_range=TINY_INIT_STD,
                     resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0, tie_word_embeddings=False,
                     bos_token_id=0, eos_token_id=0, **sizes)


def phi2_shaped_config(vocab_size: int = 51200) -> PhiConfig:
    """microsoft/phi-2's sizes (2.78 B parameters): hidden 2560, 32 layers, 32 heads, MLP 10240."""
    return PhiConfig(vocab_size=vocab_size, hidden_size=2560, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32, intermediate_size=10240, partial_rotary_factor=0.4,
                     max_position_embeddings=2048, rope_theta=10000.0, hidden_act="gelu_new",
                     layer_norm_eps=1e-5, resid_pdrop=0.1, embd_pdrop=0.0, attention_dropout=0.0,
                     tie_word_embeddings=False, bos_token_id=50256, eos_token_id=50256)


def _checked_texts(texts: Iterable[str]) -> list[str]:
    """``texts`` as a list; TypeError for anything but strings (e.g. the paths of data files)."""
    texts = list(texts)
    odd = next((t for t in texts if not isinstance(t, str)), None)
    if not texts or odd is not None:
        got = f"{odd!r}, not a string" if texts else "none"
        raise TypeError(f"expected the texts to train the tokenizer on, got {got}; for QA data files pass "
                        "utils.qa.data.qa_texts(*files)")
    return texts


def ensure_tiny_phi(folder: str | Path, texts: Iterable[str], seed: int = 0,
                    vocab_size: int = 2048, **sizes: int) -> Path:
    """Build (once) and save a seeded tiny Phi + a tokenizer trained on ``texts`` in ``folder``; return the folder.

    A folder built earlier with the same recipe (seed, vocabulary, sizes and a digest of the texts, recorded in
    ``tiny_phi_recipe.json``) is reused.

    Raises:
        TypeError: ``texts`` is empty or holds something other than strings (e.g. data file paths).
    """
    folder = Path(folder)
    texts = _checked_texts(texts)
    recipe = {"seed": seed, "init_std": TINY_INIT_STD, "vocab_size": vocab_size, "sizes": TINY_SIZES | sizes,
              "texts": {"count": len(texts), "sha256": hashlib.sha256(json.dumps(texts).encode()).hexdigest()}}

    def is_current(path: Path) -> bool:
        marker = path / "tiny_phi_recipe.json"
        return marker.is_file() and json.loads(marker.read_text()) == recipe

    def build(path: Path) -> None:
        tokenizer = train_tokenizer(texts, vocab_size)
        torch.manual_seed(seed)
        config = tiny_phi_config(vocab_size=64 * -(-len(tokenizer) // 64), **sizes)  # rounded up to 64
        PhiForCausalLM(config).eval().save_pretrained(path)
        tokenizer.save_pretrained(path)
        (path / "tiny_phi_recipe.json").write_text(json.dumps(recipe, indent=1))

    return build_folder_once(folder, build, is_current)


def build_random_phi2(folder: str | Path, texts: Iterable[str], seed: int = 0) -> Path:
    """Save a Phi-2-SHAPED model with random weights (bf16, built on the GPU when there is one) and a
    BPE tokenizer trained on ``texts`` (e.g. :func:`utils.qa.data.qa_texts` of the QA data files): for speed and
    memory measurements where the Hub (real Phi-2) is out of reach. Its quality numbers mean nothing. Returns
    ``folder``.

    Raises:
        TypeError: ``texts`` is empty or holds something other than strings (e.g. data file paths).
    """
    folder = Path(folder)
    tokenizer = train_tokenizer(_checked_texts(texts), vocab_size=2048)
    config = phi2_shaped_config()
    config.bos_token_id = config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = PhiForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
