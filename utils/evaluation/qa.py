"""Evaluating a QA adapter: greedy answers, answer perplexity, generation speed, merging (an adapter is loaded by
:func:`utils.models.adapters.load_adapter`).

Scores of the answers are :mod:`utils.evaluation.squad`'s (official SQuAD v1.1 EM/F1).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorWithFlattening

from utils.qa.data import IGNORE_INDEX, PromptFormat, Shot, encode_prompt, prompt_format
from utils.qa.loss import graded_positions

MAX_NEW_TOKENS = 24  # the default answer budget in tokens (notebooks 04-05 measure theirs: answer_length_budget)


@torch.no_grad()
def generate_answers(model: torch.nn.Module, tokenizer: Any, rows: Sequence[Mapping[str, Any]],
                     max_new_tokens: int = MAX_NEW_TOKENS, max_length: int = 512, batch_size: int = 16,
                     progress: bool = True, fmt: PromptFormat | None = None, shots: Sequence[Shot] = ()) -> list[str]:
    """Greedy answers (no sampling: reproducible), cut at the end token or the first newline.

    Prompts are in ``fmt`` (default: the model's own, :func:`utils.qa.data.prompt_format`), after the worked
    examples ``shots`` if any (:func:`utils.qa.data.few_shot_examples`), left-padded into batches of prompts of
    similar length (the answers come back in the rows' order). A context
    that does not fit ``max_length - max_new_tokens`` tokens keeps its beginning: where the reference answer
    lies is never used to build a scored prompt (a warning counts the prompts that were cut).
    """
    from utils.progress import progress_bar

    device = next(model.parameters()).device
    fmt = fmt or prompt_format(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [encode_prompt(tokenizer, r["question"], r["context"], max_length - max_new_tokens, -1, fmt, shots)
               for r in rows]
    cut = sum(truncated for _, truncated in encoded)
    order = sorted(range(len(rows)), key=lambda i: len(encoded[i][0]))  # batches of similar length: less padding
    answers: list[str] = [""] * len(rows)
    was_training = model.training
    model.eval()
    starts = range(0, len(rows), batch_size)
    for start in progress_bar(starts, desc="generating", disable=not progress):
        batch = order[start:start + batch_size]
        prompts = [encoded[i][0] for i in batch]
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
                             use_cache=True)
        for i, seq in zip(batch, out[:, width:], strict=True):
            answers[i] = tokenizer.decode(seq, skip_special_tokens=True).split("\n")[0].strip()
    model.train(was_training)
    if cut:
        warnings.warn(f"{cut} of {len(rows)} contexts were longer than max_length={max_length} allows with "
                      f"max_new_tokens={max_new_tokens} and were cut to their beginning (an answer beyond the cut "
                      "cannot be found): raise max_length", stacklevel=2)
    return answers


def answer_length_budget(rows: Sequence[Mapping[str, Any]], tokenizer: Any, fmt: PromptFormat,
                         share: float = 0.95) -> dict[str, Any]:
    """How many new tokens to generate, from the length of the answers in ``rows`` (the training split's, so
    the budget does not peek at the evaluation answers).

    Returns:
        ``max_new_tokens`` (the ``share`` quantile of the answers' token lengths, plus one token for the newline or
        end token that closes an answer), ``share``, ``covered`` (the share of those answers that fit) and
        ``longest`` (the longest answer's tokens).
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    lengths = sorted(len(tokenizer(fmt.answer_prefix + r["answers"]["text"][0].strip(),
                                   add_special_tokens=False)["input_ids"]) for r in rows)
    if not lengths:
        raise ValueError("no answers to measure: pass the training rows")
    quantile = lengths[max(0, math.ceil(share * len(lengths)) - 1)]
    return {"max_new_tokens": quantile + 1, "share": share,
            "covered": sum(n <= quantile for n in lengths) / len(lengths), "longest": lengths[-1]}


WAYS = ("zero-shot base", "few-shot base", "tuned")  # what notebook 05 compares, in the order it reads


def score_three_ways(model: torch.nn.Module, tokenizer: Any, rows: Sequence[Mapping[str, Any]],
                     shots_from: Sequence[Mapping[str, Any]], seed: int, few_shot: int, zero_shot: bool = True,
                     **generate: Any) -> list[dict[str, Any]]:
    """Score one evaluation set three ways with the same greedy decoding:

    * ``"zero-shot base"``: the base model (adapter off) on the training prompt; deterministic, so only when
      ``zero_shot`` (score it for one seed);
    * ``"few-shot base"``: the base model after ``few_shot`` worked examples drawn (with ``seed``) from
      ``shots_from``, the *training* split of the same kind of data (:func:`utils.qa.data.few_shot_examples`);
    * ``"tuned"``: the model with its active adapter (the one trained with ``seed``), training prompt.

    Args:
        model: a peft model whose active adapter is the tuned one.
        rows: the evaluation rows (their ``answers`` are the references; never used to build a prompt).
        generate: :func:`generate_answers`' settings (``max_new_tokens``, ``max_length``, ``fmt``, ...).
    Returns:
        one record per way: ``way``, ``seed`` (None for the zero-shot base), ``exact_match``, ``f1`` (percent),
        ``n``, the ``answers`` and the ``seconds`` their generation took.
    """
    from utils.evaluation.squad import squad_scores
    from utils.qa.data import few_shot_examples

    references = [r["answers"]["text"] for r in rows]
    generate = {"progress": False, **generate}

    def record(way: str, seed: int | None, **kwargs: Any) -> dict[str, Any]:
        start = time.perf_counter()
        answers = generate_answers(model, tokenizer, rows, **generate, **kwargs)
        seconds = time.perf_counter() - start  # the answers are decoded strings: the device has finished
        scores = squad_scores(answers, references)
        return {"way": way, "seed": seed, "exact_match": scores["exact_match"], "f1": scores["f1"], "n": scores["n"],
                "answers": answers, "seconds": seconds}

    records = [record("tuned", seed)]
    shots = few_shot_examples(shots_from, few_shot, seed)
    with model.disable_adapter():
        records.append(record("few-shot base", seed, shots=shots))
        if zero_shot:
            records.append(record("zero-shot base", None))
    return records


def summarize_ways(records: Sequence[Mapping[str, Any]], metric: str = "f1") -> dict[str, dict[str, float]]:
    """``{way: {"mean", "std", "seeds"}}`` of :func:`score_three_ways`' records for one evaluation set. The
    zero-shot base is deterministic (greedy decoding of one prompt), so its std is 0, not unknown."""
    from utils.evaluation.seeds import mean_std

    summary = {}
    for way in WAYS:
        values = [r[metric] for r in records if r["way"] == way]
        if values:
            mean, std = mean_std(values)
            summary[way] = {"mean": mean, "std": 0.0 if way == "zero-shot base" else std, "seeds": len(values)}
    return summary


def three_way_verdicts(f1: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
    """What the seed rule (:func:`utils.evaluation.seeds.seed_verdict`) says of one set's :func:`summarize_ways`:
    ``"prompt"``, the few-shot base against the zero-shot base (what worked examples fix), and ``"tuning"``, the
    tuned model against the few-shot base (what fine-tuning adds beyond a prompt)."""
    from utils.evaluation.seeds import seed_verdict

    z, f, t = (f1[way] for way in WAYS)
    return {"prompt": seed_verdict(f["mean"], f["std"], z["mean"], z["std"]),
            "tuning": seed_verdict(t["mean"], t["std"], f["mean"], f["std"])}


@torch.no_grad()
def answer_perplexity(model: torch.nn.Module, features: Sequence[Mapping[str, list[int]]],
                      batch_size: int = 16) -> float:
    """exp(mean negative log-likelihood per answer token) over tokenized features (answer tokens only)."""
    device = next(model.parameters()).device
    collator = DataCollatorWithFlattening()
    nll, count = 0.0, 0
    was_training = model.training
    model.eval()
    for start in range(0, len(features), batch_size):
        batch = {k: v.to(device) for k, v in collator(list(features[start:start + batch_size])).items()}
        labels = batch.pop("labels")
        keep = graded_positions(labels)  # the LM head runs only where the next token is an answer token
        logits = model(**batch, use_cache=False, logits_to_keep=keep).logits.float()  # packed: no KV cache
        targets = labels[:, keep + 1]
        logp = torch.log_softmax(logits, dim=-1)
        mask = targets != IGNORE_INDEX
        picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        nll -= picked[mask].sum().item()
        count += int(mask.sum())
    model.train(was_training)
    return math.exp(nll / count)


@torch.no_grad()
def timed_generation(model: torch.nn.Module, tokenizer: Any, rows: Sequence[Mapping[str, Any]],
                     **kwargs: Any) -> dict[str, Any]:
    """:func:`generate_answers` (no progress bar), timed: ``answers``, ``seconds``, ``questions_per_s`` and, on a GPU,
    ``peak_gib`` (the peak of GPU tensors; on a CPU the process's peak memory never goes down, so it would measure
    everything loaded before, and is left out)."""
    from utils.memory import track_peak

    with track_peak() as peak:
        answers = generate_answers(model, tokenizer, rows, **{**kwargs, "progress": False})
    report = {"answers": answers, "seconds": peak.seconds, "questions_per_s": len(rows) / peak.seconds}
    if peak.device == "cuda":
        report["peak_gib"] = peak.gib
    return report


def compare_answers(answers: Mapping[str, Sequence[str]], references: Sequence[Sequence[str]],
                    reference_model: str | None = None, spread: float | None = None) -> dict[str, dict[str, Any]]:
    """EM and F1 (percent) of each model's answers to the same questions, and how many of its answers are those of
    ``reference_model`` (default: the first), after SQuAD's normalisation (so "the Oss" and "Oss" count as the same).

    Args:
        answers: ``{model name: its answers}``, every list in the order of ``references`` (the first ``len(answers)``
            questions when a model answered fewer).
        references: each question's reference answers.
        spread: the F1 standard deviation that retraining with other seeds gives (notebook 05: the tuned model's);
            with it, each model's F1 gets the seed rule's verdict against the reference model's
            (``utils.evaluation.seeds.seed_verdict``: a change counts beyond twice the spread).
    Returns:
        ``{model name: {"exact_match", "f1", "n", "same answers"}}``, plus ``"f1 vs reference"`` (``"higher"``,
        ``"lower"``, ``"within seed noise"``, ``"not comparable"`` for a ``nan`` spread) when ``spread`` is given.
    """
    from utils.evaluation.seeds import seed_verdict
    from utils.evaluation.squad import normalize_answer, squad_scores

    if not answers:
        raise ValueError("no answers to compare: pass {model name: answers}")
    reference_model = reference_model or next(iter(answers))
    if reference_model not in answers:
        raise ValueError(f"reference_model {reference_model!r} is not one of {list(answers)}")
    base = [normalize_answer(a) for a in answers[reference_model]]
    table = {}
    for name, given in answers.items():
        if len(given) > len(base):
            raise ValueError(f"{name} answered {len(given)} questions, {reference_model} only {len(base)}")
        scores = squad_scores(list(given), list(references[:len(given)]))
        table[name] = {"exact_match": scores["exact_match"], "f1": scores["f1"], "n": scores["n"],
                       "same answers": sum(normalize_answer(a) == b for a, b in zip(given, base[:len(given)], strict=True))}
    if spread is not None:
        for row in table.values():  # the reference model's score is one run's: 0 spread of its own, the seeds' beside
            row["f1 vs reference"] = seed_verdict(row["f1"], 0.0, table[reference_model]["f1"], spread)
    return table


def merge_adapter(base_path: str | Path, adapter_path: str | Path, dtype: torch.dtype) -> torch.nn.Module:
    """Load the base unquantized in ``dtype`` (16-bit on a GPU), apply the adapter and merge it in.

    The result is a plain transformers model (no peft, no bitsandbytes) with W + (alpha/r) B A folded
    into each targeted weight: no adapter overhead at inference, and it can be quantized or exported.
    """
    from utils.models.adapters import load_adapter

    return load_adapter(base_path, adapter_path, dtype=dtype).merge_and_unload().eval()


@torch.no_grad()
def merge_check(tuned: torch.nn.Module, base_path: str | Path, adapter_path: str | Path,
                batch: Mapping[str, torch.Tensor], dtype: torch.dtype) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Merge the adapter into a ``dtype`` copy of the base and compare logits on ``batch``.

    Three models see the same batch: ``tuned`` (the 4-bit base + adapter, as trained), the unquantized
    ``dtype`` base with the adapter unmerged, and that same copy with the adapter merged in (``merge_and_unload``, as
    in :func:`merge_adapter`). Merging alone must change nothing but rounding: the merged and unmerged logits may
    differ by at most ``rounding floor``, :func:`utils.export.rounding_floor` with ``dtype``'s unit roundoff (in
    float32 a sharp bound; in 16 bit it can exceed the logits themselves, and the top-1 agreement is the check).
    Against ``tuned`` the difference is not rounding: the merged copy carries the original base weights, the adapter
    was trained on their NF4 rounding.

    Returns:
        ``(merged model, report)``: ``dtype``, ``positions`` compared, ``max |logit|`` (unmerged),
        ``max |merged - unmerged|`` and its ``rounding floor``, and the share of positions whose top-1 (greedy next)
        token agrees: ``top-1 agreement merged vs unmerged`` and ``top-1 agreement merged vs 4-bit + adapter``.
    """
    from utils.export import rounding_floor
    from utils.models.adapters import load_adapter

    device = next(tuned.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    logits_4bit = tuned(**batch, use_cache=False).logits.float()
    unmerged = load_adapter(base_path, adapter_path, dtype=dtype)
    logits_unmerged = unmerged(**batch, use_cache=False).logits.float()
    merged = unmerged.merge_and_unload().eval()  # the same copy, merged in place (what merge_adapter does): one load
    logits_merged = merged(**batch, use_cache=False).logits.float()
    scale = logits_unmerged.abs().max().item()
    top1 = logits_merged.argmax(-1)
    return merged, {
        "dtype": str(dtype).removeprefix("torch."),
        "positions": int(top1.numel()),
        "max |logit|": scale,
        "max |merged - unmerged|": (logits_merged - logits_unmerged).abs().max().item(),
        "rounding floor": rounding_floor(merged.config, batch["input_ids"].shape[-1], scale,
                                         unit=torch.finfo(dtype).eps / 2),
        "top-1 agreement merged vs unmerged": (top1 == logits_unmerged.argmax(-1)).float().mean().item(),
        "top-1 agreement merged vs 4-bit + adapter": (top1 == logits_4bit.argmax(-1)).float().mean().item(),
    }


@torch.no_grad()
def passage_nll(model: torch.nn.Module, tokenizer: Any, passages: Sequence[str], max_length: int,
                batch_size: int = 8) -> tuple[list[float], list[int]]:
    """Summed negative log-likelihood (nats) and scored tokens of each passage, on its first ``max_length`` tokens
    (one window each: every passage is scored with the same context length whatever the model).

    Passages go ``batch_size`` at a time, right-padded (a padded position is neither attended to nor scored, and
    the real tokens keep their positions): the same sums as one passage at a time up to float rounding, with fewer
    forward passes (a 4-bit model dequantizes its weights once per pass).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    encoded = [tokenizer(text, truncation=True, max_length=max_length)["input_ids"] for text in passages]
    for ids, text in zip(encoded, passages, strict=True):
        if len(ids) < 2:
            raise ValueError(f"a passage of {len(ids)} token(s) has nothing to predict: {text[:60]!r}")
    was_training = model.training
    model.eval()
    nll: list[float] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        width = max(map(len, chunk))
        input_ids = torch.tensor([ids + [0] * (width - len(ids)) for ids in chunk], device=device)
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in chunk], device=device)
        logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        token_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), input_ids[:, 1:], reduction="none")
        nll += (token_nll * mask[:, 1:]).sum(dim=1).tolist()  # targets 1..len-1 of each passage
    model.train(was_training)
    return nll, [len(ids) - 1 for ids in encoded]


def perplexity_ratio(nll_a: Sequence[float], nll_b: Sequence[float], tokens: Sequence[int], n_boot: int = 2000,
                     seed: int = 0) -> dict[str, float]:
    """How much harder text is for model a than for model b, with a noise scale from the passages.

    ``ratio = ppl_a / ppl_b = exp((sum nll_a - sum nll_b) / sum tokens)`` over the same passages, and its 95%
    interval from a paired bootstrap over passages (``n_boot`` resamples, seeded): what another sample of
    passages of the same kind could have given. Returns ``ratio``, ``low``, ``high`` (each ``- 1`` is the change).
    """
    import numpy as np

    a, b, n = (np.asarray(x, dtype=np.float64) for x in (nll_a, nll_b, tokens))
    if not (len(a) == len(b) == len(n)) or len(a) < 2:
        raise ValueError(f"need the same >= 2 passages for both models, got {len(a)}, {len(b)}, {len(n)}")
    picks = np.random.default_rng(seed).integers(0, len(a), size=(n_boot, len(a)))
    boot = np.exp((a[picks].sum(1) - b[picks].sum(1)) / n[picks].sum(1))
    low, high = np.quantile(boot, [0.025, 0.975])
    return {"ratio": float(np.exp((a.sum() - b.sum()) / n.sum())), "low": float(low), "high": float(high)}


def general_text_perplexity(model: torch.nn.Module, tokenizer: Any, passages: Sequence[str], max_length: int,
                            unquantized: torch.nn.Module | None = None, seed: int = 0) -> dict[str, Any]:
    """What fine-tuning cost outside its task, next to what 4-bit storage alone costs, on plain prose (not QA).

    Perplexity of ``passages`` (:func:`passage_nll`) for the 4-bit base with the adapter (``"tuned"``) and
    without it (``"base"``, peft's ``disable_adapter``), and, given ``unquantized`` (the same base model not
    quantized), for that model too.

    Returns:
        ``{"passages", "tokens", "perplexity": {"unquantized"?, "base", "tuned"}, "tuning": perplexity_ratio(tuned,
        base), "nf4": perplexity_ratio(base, unquantized)?}``; a ratio above 1 means the text got harder.
    """
    tuned_nll, tokens = passage_nll(model, tokenizer, passages, max_length)
    with model.disable_adapter():
        base_nll, _ = passage_nll(model, tokenizer, passages, max_length)

    def ppl(nll: Sequence[float]) -> float:
        return math.exp(sum(nll) / sum(tokens))

    report: dict[str, Any] = {"passages": len(passages), "tokens": sum(tokens),
                              "perplexity": {"base": ppl(base_nll), "tuned": ppl(tuned_nll)},
                              "tuning": perplexity_ratio(tuned_nll, base_nll, tokens, seed=seed)}
    if unquantized is not None:
        float_nll, _ = passage_nll(unquantized, tokenizer, passages, max_length)
        report["perplexity"] = {"unquantized": ppl(float_nll), **report["perplexity"]}
        report["nf4"] = perplexity_ratio(base_nll, float_nll, tokens, seed=seed)
    return report
