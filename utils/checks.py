"""Checkers for the notebooks' exercises: each says in plain words what is wrong.

A checker takes the learner's function (or answer), compares it with a reference on small,
seeded inputs and raises :class:`CheckFailed` with an explanation, or returns a short message
on success. Checkers never print; the check cell shows the returned message.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from utils import quant


class CheckFailed(AssertionError):
    """The exercise's answer is not right yet; the message says why and what to look at."""


def _call(fn: Callable, *args: Any) -> Any:
    """Call the learner's function, turning 'not written yet' and crashes into plain messages."""
    name = getattr(fn, "__name__", "your function")
    try:
        return fn(*args)
    except NotImplementedError:
        raise CheckFailed(f"`{name}` is not written yet: replace `raise NotImplementedError` with your code.") from None
    except Exception as err:  # the learner's bug, reported in words
        raise CheckFailed(f"`{name}` raised {type(err).__name__}: {err}") from None


def _inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(256, generator=g) * 0.02, torch.tensor([0.7, -0.36, 0.1, 0.0, -0.7]),
            torch.randn(1000, generator=g).pow(3)]


# --- notebook 01 ------------------------------------------------------------------------------


def check_absmax_int4(absmax_int4: Callable) -> str:
    """``absmax_int4(x) -> (codes, scale)``: integer codes in -7..7 and scale = max|x|."""
    for x in _inputs():
        out = _call(absmax_int4, x)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CheckFailed("`absmax_int4` should return a pair `(codes, scale)`.")
        codes, scale = out
        codes = torch.as_tensor(codes)
        if codes.shape != x.shape:
            raise CheckFailed(f"codes should have one entry per value: shape {tuple(x.shape)}, got {tuple(codes.shape)}.")
        if float(scale) != float(x.abs().max()):
            raise CheckFailed(f"scale should be the largest magnitude max|x| = {float(x.abs().max()):.6g}, got {float(scale):.6g}.")
        if codes.is_floating_point() and not torch.equal(codes, codes.round()):
            raise CheckFailed("codes should be whole numbers: round x / scale * 7 to the nearest integer.")
        if codes.min() < -7 or codes.max() > 7:
            raise CheckFailed(f"codes must lie in -7..7, got {int(codes.min())}..{int(codes.max())}.")
        reference = quant.fake_quantize(x, "int4", x.numel())
        yours = codes.float() * float(scale) / 7
        wrong = (yours - reference).abs() > 1e-6 * float(scale)
        if wrong.any():
            i = int(wrong.nonzero()[0])
            raise CheckFailed(f"{int(wrong.sum())} of {x.numel()} values come back wrong, e.g. x[{i}] = {float(x[i]):.4g} "
                              f"gives code {int(codes[i])}, expected {round(float(reference[i]) / float(scale) * 7)}: the code is "
                              "the nearest integer to x / scale * 7 (torch.round).")
    return "✓ absmax_int4 matches the reference on all test tensors."


def check_bits_per_weight(answers: dict[str, float]) -> str:
    """``answers = {"block 32 + double quant": ..., "block 128": ...}`` in bits per weight."""
    expected = {"block 32 + double quant": quant.bits_per_parameter(32, double_quant=True),
                "block 128": quant.bits_per_parameter(128)}
    for key, value in expected.items():
        if key not in answers or answers[key] is None:
            raise CheckFailed(f"fill in answers[{key!r}] with a number of bits per weight.")
        if abs(float(answers[key]) - value) > 1e-3:
            hint = ("4 bits for the code, plus 8/32 for the 8-bit absmax, plus 32/(32*256) for the second-level scale"
                    if "double" in key else "4 bits for the code plus one float32 (32 bits) shared by 128 weights")
            raise CheckFailed(f"{key}: {answers[key]} is not right. Count {hint}.")
    return "✓ both storage costs are right."


def check_spoiled_block(spoiled_block: Callable) -> str:
    """``spoiled_block(index, blocksize, shape) -> int``: the block of a flat index in a row-major tensor."""
    cases = [((0, 0), 64, (384, 384)), ((0, 100), 64, (384, 384)), ((2, 5), 64, (384, 384)), ((191, 200), 128, (384, 384))]
    for (row, col), blocksize, shape in cases:
        got = _call(spoiled_block, (row, col), blocksize, shape)
        expected = (row * shape[1] + col) // blocksize
        if got != expected:
            raise CheckFailed(f"weight ({row}, {col}) of a {shape} matrix with blocks of {blocksize}: expected block "
                              f"{expected}, got {got}. Blocks run over the *flattened* (row-major) tensor: "
                              "flat index = row * n_columns + column.")
    return "✓ spoiled_block finds the right block."


def check_nf4_levels(nf4_levels_yours: Callable) -> str:
    """``nf4_levels_yours() -> tensor(16)``: NF4 levels derived from normal quantiles."""
    levels = torch.as_tensor(_call(nf4_levels_yours)).float().flatten()
    reference = quant.nf4_levels()
    if levels.numel() != 16:
        raise CheckFailed(f"NF4 has 16 levels, you returned {levels.numel()}.")
    if not torch.equal(levels, levels.sort().values):
        raise CheckFailed("sort the levels in ascending order.")
    if levels.max() != 1 or levels.min() != -1:
        raise CheckFailed("normalise: divide by the largest level so the levels span exactly [-1, 1].")
    if not (levels == 0).any():
        raise CheckFailed("NF4 has an exact zero level: 7 negative quantiles, 0, and 8 positive ones.")
    worst = float((levels - reference).abs().max())
    if worst > 1e-5:
        raise CheckFailed(f"levels differ from NF4's by up to {worst:.3g}. Use probabilities evenly spaced from "
                          "the offset 0.9677083 down to 0.5 (9 points for the positive side, 8 for the negative), "
                          "drop the 0.5 itself, and take torch.special.ndtri of them.")
    return f"✓ your levels equal NF4's to within {worst:.1e}."


# --- notebook 02 ------------------------------------------------------------------------------


def check_sqnr_db(sqnr_db: Callable) -> str:
    """``sqnr_db(x, x_hat) -> float``: 10 log10(mean(x^2) / mean((x - x_hat)^2))."""
    for x in _inputs():
        x_hat = quant.fake_quantize(x, "nf4", 64)
        got, expected = float(_call(sqnr_db, x, x_hat)), quant.quant_error(x, x_hat)["sqnr_db"]
        if abs(got - expected) > 1e-3:
            hint = ("you may have used log instead of log10, or forgotten the factor 10" if abs(got) < abs(expected) / 2
                    else "check that the signal is mean(x**2) and the noise mean((x - x_hat)**2)")
            raise CheckFailed(f"expected {expected:.3f} dB, got {got:.3f} dB: {hint}.")
    return "✓ sqnr_db matches quant.quant_error."


def check_p999_error(p999_error: Callable) -> str:
    """``p999_error(x, x_hat) -> float``: the 99.9th percentile of |x - x_hat|."""
    for x in _inputs():
        x_hat = quant.fake_quantize(x, "int4", 64)
        expected = float(torch.quantile((x - x_hat).abs().double(), 0.999))
        got = float(_call(p999_error, x, x_hat))
        if abs(got - expected) > 1e-6 * max(1.0, abs(expected)):
            raise CheckFailed(f"expected {expected:.6g}, got {got:.6g}. Take absolute errors first, then "
                              "torch.quantile(..., 0.999) (0.999, not 99.9).")
    return "✓ p999_error is right."


def check_choose_blocksize(choose_blocksize: Callable) -> str:
    """``choose_blocksize(rows, min_sqnr_db) -> int``: the largest NF4 block size meeting the floor."""
    x = _inputs()[0].repeat(64)
    rows = quant.error_sweep(x, ["nf4", "int4"], [32, 64, 128, 256, 512])
    for floor in (15.0, 19.5, 20.5):
        ok = [r["blocksize"] for r in rows if r["method"] == "nf4" and r["sqnr_db"] >= floor]
        expected = max(ok) if ok else None
        got = _call(choose_blocksize, rows, floor)
        if got != expected:
            raise CheckFailed(f"with a floor of {floor} dB the answer is {expected}, got {got}. Keep only NF4 rows "
                              "with sqnr_db >= the floor; the largest block size among them costs the least memory "
                              "(return None if none qualifies).")
    return "✓ choose_blocksize picks the cheapest block size that is good enough."


# --- notebook 04 ------------------------------------------------------------------------------


class _CharTokenizer:
    """A one-token-per-character stand-in for a real tokenizer (ids = code points, EOS = 0).

    It has the interface :func:`utils.qa_data.encode_example` uses, so the checkers can compare
    with the course's own encoding without loading a model's tokenizer.
    """

    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = False) -> dict:
        out: dict[str, list] = {"input_ids": [ord(c) for c in text]}
        if return_offsets_mapping:
            out["offset_mapping"] = [(i, i + 1) for i in range(len(text))]
        return out


def _qa_rows(n: int) -> list[dict]:
    from utils.qa_data import load_squad_json
    from utils.report import REPO_ROOT

    return load_squad_json(REPO_ROOT / "data/qa/train.json")[:n]


def check_answer_only_labels(answer_only_labels: Callable) -> str:
    """``answer_only_labels(input_ids, prompt_length) -> labels``: -100 on the prompt, the ids after it."""
    from utils.qa_data import IGNORE_INDEX, encode_example

    cases = [([11, 12, 13, 14, 15], 3)]
    for row in _qa_rows(4):  # real examples, encoded by the course's own code (one token per character)
        enc = encode_example(row, _CharTokenizer(), max_length=200)
        cases.append((enc.input_ids, enc.prompt_length))
    for input_ids, prompt_length in cases:
        given = list(input_ids)
        labels = _call(answer_only_labels, given, prompt_length)
        if given != list(input_ids):
            raise CheckFailed("`answer_only_labels` changed `input_ids` in place: the model would then read -100 as "
                              "a token id. Build a new list (e.g. `labels = list(input_ids)`) and change that.")
        labels = [int(v) for v in labels]
        expected = [IGNORE_INDEX] * prompt_length + list(input_ids[prompt_length:])
        if len(labels) != len(input_ids):
            raise CheckFailed(f"one label per input id: {len(input_ids)} ids but {len(labels)} labels.")
        if labels == expected:
            continue
        short = f"input_ids={list(input_ids)}, prompt_length={prompt_length}" if len(input_ids) < 10 else \
            f"an example of {len(input_ids)} tokens with a prompt of {prompt_length}"
        masked = [v == IGNORE_INDEX for v in labels]
        if 0 in labels[:prompt_length] and IGNORE_INDEX not in labels:
            hint = "mask with -100 (qa_data.IGNORE_INDEX), the value cross-entropy skips; 0 is a real token id."
        elif all(masked[prompt_length:]) and not any(masked[:prompt_length]):
            hint = "you masked the answer: -100 belongs on the prompt tokens, the answer keeps its ids."
        elif sum(masked) != prompt_length:
            hint = (f"{sum(masked)} labels are -100, expected exactly the {prompt_length} prompt tokens "
                    "(positions 0 .. prompt_length-1): an off-by-one in the slice?")
        else:
            hint = "the labels after the prompt must be the input ids themselves, in the same order."
        raise CheckFailed(f"for {short}: {hint}")
    return "✓ answer_only_labels gives the same labels as utils.qa_data.encode_example."


def check_padding_waste(padding_waste: Callable) -> str:
    """``padding_waste(lengths, pad_to=None) -> float``: share of a padded batch's tokens that are padding.

    ``pad_to=None`` pads every example to the longest one (dynamic padding); an integer pads to that
    many tokens (e.g. ``MAX_LENGTH``). Packing (``DataCollatorWithFlattening``) keeps only real tokens.
    """
    from transformers import DataCollatorWithFlattening

    cases = [([10, 20, 30, 40], None), ([10, 20, 30, 40], 128), ([57, 61, 73, 64, 90, 58, 66, 71], None),
             ([57, 61, 73, 64, 90, 58, 66, 71], 128)]
    for lengths, pad_to in cases:
        features = [{"input_ids": list(range(1, n + 1))} for n in lengths]
        packed = DataCollatorWithFlattening()(features)["input_ids"].shape[1]  # real tokens only
        padded = len(lengths) * (pad_to or max(lengths))
        expected = 1 - packed / padded
        got = float(_call(padding_waste, list(lengths), pad_to))
        if abs(got - expected) < 1e-9:
            continue
        where = f"lengths {lengths} padded to {pad_to or 'the longest'}"
        pads = padded - packed
        if abs(got - 100 * expected) < 1e-6:
            hint = "return a fraction between 0 and 1, not a percentage."
        elif abs(got - (1 - expected)) < 1e-9:
            hint = "that is the share of real tokens; the question is the share of padding."
        elif abs(got - pads / packed) < 1e-9:
            hint = "divide the pad tokens by ALL tokens of the padded batch (real + pad), not by the real ones."
        elif pad_to is None:
            hint = "with pad_to=None every example is padded to the longest one, max(lengths)."
        elif abs(got - (1 - packed / (len(lengths) * max(lengths)))) < 1e-9:
            hint = f"with pad_to={pad_to} every example is padded to {pad_to} tokens, not to the longest."
        else:
            hint = "padded batch = n_examples x padded length tokens; padding share = 1 - real tokens / that."
        raise CheckFailed(f"{where}: expected {expected:.4f}, got {got:.4f}. {hint}")
    return "✓ padding_waste is right: packing saves exactly this share of the compute."


_ADAM_MOMENT_KEYS = ("exp_avg", "exp_avg_sq", "state1", "state2", "absmax1", "absmax2")


def _measured_adam_state(n_values: int, optimizer: str) -> int:
    """Bytes of the two moments (and 8-bit block scales) that torch / bitsandbytes keep for one tensor."""
    import bitsandbytes as bnb

    cls = {"adamw_torch": torch.optim.AdamW, "paged_adamw_8bit": bnb.optim.PagedAdamW8bit}[optimizer]
    p = torch.nn.Parameter(torch.zeros(n_values))
    opt = cls([p], lr=1e-3)
    p.grad = torch.ones(n_values)
    with warnings.catch_warnings():  # "paged optimizers are not supported on CPU": same state, not paged
        warnings.simplefilter("ignore", UserWarning)
        opt.step()
    return sum(t.numel() * t.element_size() for k, t in opt.state[p].items() if k in _ADAM_MOMENT_KEYS)


def check_adam_state_bytes(adam_state_bytes: Callable) -> str:
    """``adam_state_bytes(n_values, optimizer) -> int``: AdamW's moment memory for one trainable tensor.

    Counted: the two moments, plus for ``"paged_adamw_8bit"`` their block scales (one float32 absmax
    per 256 values per moment; tensors under 4096 values keep 32-bit moments). Not counted: the step
    counter and bitsandbytes' two fixed 256-entry quantization maps. Compared with what torch and
    bitsandbytes actually allocate after one step on the CPU.
    """
    for optimizer in ("adamw_torch", "paged_adamw_8bit"):
        for n in (1000, 4096, 5000, 65536, 100000):
            expected = _measured_adam_state(n, optimizer)
            got = _call(adam_state_bytes, n, optimizer)
            if got is not None and float(got) == expected:
                continue
            got = float(got) if got is not None else float("nan")
            blocks_up, blocks_down = -(-n // 256), n // 256
            if optimizer == "adamw_torch":
                hint = {4 * n: "AdamW keeps TWO moments (mean and mean of squares), each in float32.",
                        16 * n: "count only the optimizer's two fp32 moments (8 bytes per value); weights and "
                                "gradients are not optimizer state."}.get(got, "two float32 moments: 8 bytes per value.")
            elif n < 4096 and got != 8 * n:
                hint = ("bitsandbytes keeps 32-bit moments for tensors with fewer than 4096 values "
                        "(min_8bit_size): 8 bytes per value for this one.")
            elif n >= 4096 and got == 8 * n:
                hint = "from 4096 values on (the rule is 'fewer than 4096' stay 32-bit) the moments are 8-bit."
            elif got == 2 * n:
                hint = "add the block scales: one float32 absmax per block of 256 values, for each of the 2 moments."
            elif got == 2 * n + 8 * blocks_down:
                hint = "a last, partial block needs its own scale too: round the number of blocks up (ceil)."
            elif got in (n + 4 * blocks_up, n):
                hint = "AdamW keeps two moments, each stored in 1 byte per value plus its own block scales."
            else:
                hint = "2 moments x (1 byte per value + 4 bytes per block of 256 values, blocks rounded up)."
            raise CheckFailed(f"{optimizer}, a tensor of {n:,} values: expected {expected:,} bytes, got {got:,.0f}. {hint}")
    return "✓ adam_state_bytes matches the bytes torch and bitsandbytes allocate."


# --- notebook 05 ------------------------------------------------------------------------------

_ANSWERS = ["The Denver Broncos!", "  in   1790 ", "a grey heron", "AN APPLE", "Theatre of an answer",
            "U.S. Navy", "Hugo Nolte's flag", "red\tand\nblue", "8 a.m.", "the-end"]


def check_normalize_answer(normalize_answer: Callable) -> str:
    """``normalize_answer(text) -> str``: SQuAD's normalisation, compared with ``utils.squad_metrics``."""
    import string

    from utils import squad_metrics

    for text in _ANSWERS:
        expected, got = squad_metrics.normalize_answer(text), _call(normalize_answer, text)
        if got == expected:
            continue
        got = str(got)
        if got != got.lower():
            hint = "lower-case the text first."
        elif text in ("8 a.m.", "the-end") and not any(ch in string.punctuation for ch in got):
            hint = ("remove punctuation BEFORE the articles (the official order): '8 a.m.' becomes '8 am' and "
                    "'the-end' becomes 'theend', which hold no article.")
        elif any(ch in string.punctuation for ch in got):
            hint = "remove every punctuation character (string.punctuation), also inside words: 'U.S.' -> 'us'."
        elif {"a", "an", "the"} & set(got.split()):
            hint = "drop the articles a, an and the."
        elif got != " ".join(got.split()):
            hint = "collapse whitespace: no leading or trailing spaces, one space between words (' '.join(s.split()))."
        elif set(expected.split()) - set(got.split()):
            hint = (r"remove articles only as whole words (a regex like \b(a|an|the)\b): 'theatre' keeps its 'the', "
                    "'apple' its 'a'.")
        else:
            hint = "lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace, in that order."
        raise CheckFailed(f"normalize_answer({text!r}) should be {expected!r}, got {got!r}: {hint}")
    return "✓ normalize_answer matches SQuAD's official normalisation."


def check_token_f1(token_f1: Callable) -> str:
    """``token_f1(prediction, truth) -> float`` in [0, 1], compared with ``utils.squad_metrics.f1``."""
    from utils import squad_metrics

    cases = [("Denver Broncos", "Denver Broncos"), ("The Denver Broncos!", "denver broncos"), ("in 1790", "1790"),
             ("new york new york", "new york new york"), ("york york", "new york"), ("Sable river", "Oss"),
             ("", "Oss"), ("a grey heron by the river", "the heron")]
    for prediction, truth in cases:
        expected = squad_metrics.f1(prediction, truth)
        try:
            got = float(_call(token_f1, prediction, truth))
        except CheckFailed as err:
            if "ZeroDivisionError" in str(err):
                raise CheckFailed(f"token_f1({prediction!r}, {truth!r}) divided by zero: when no token is shared "
                                  "(or the prediction is empty) F1 is 0; return 0.0 before computing precision.") from None
            raise
        if abs(got - expected) < 1e-9:
            continue
        if abs(got - 100 * expected) < 1e-6:
            hint = "return a number between 0 and 1 here (the corpus score is the one reported in percent)."
        elif prediction == "The Denver Broncos!":
            hint = "normalise both strings first (squad_metrics.normalize_answer), then split into tokens."
        elif prediction in ("new york new york", "york york"):
            hint = ("count shared tokens with multiplicity: sum((Counter(pred) & Counter(truth)).values()); a set "
                    "counts 'york' once, a plain loop counts it too often.")
        elif prediction == "in 1790" and abs(got - 0.75) < 1e-9:
            hint = "F1 is the harmonic mean 2PR / (P + R), not the average (P + R) / 2."
        else:
            hint = ("precision = shared / prediction tokens, recall = shared / truth tokens, "
                    "F1 = 2PR / (P + R), on normalised tokens.")
        raise CheckFailed(f"token_f1({prediction!r}, {truth!r}) should be {expected:.4f}, got {got:.4f}: {hint}")
    return "✓ token_f1 matches SQuAD's official F1."


def check_corpus_f1(corpus_f1: Callable) -> str:
    """``corpus_f1(predictions, references) -> float``: SQuAD's corpus F1 in percent (best over references)."""
    from utils import squad_metrics

    predictions = ["Denver Broncos", "in 1790", "a grey heron", "Sable river"]
    references = [["Denver Broncos", "Broncos"], ["1790", "the year 1790"], ["heron", "grey heron"], ["Oss"]]
    expected = squad_metrics.squad_scores(predictions, references)["f1"]
    got = float(_call(corpus_f1, predictions, [list(r) for r in references]))
    if abs(got - expected) < 1e-6:
        return f"✓ corpus_f1 = {got:.2f}, as squad_metrics.squad_scores computes it."
    per_question_first = [squad_metrics.f1(p, r[0]) for p, r in zip(predictions, references, strict=True)]
    per_question_mean = [sum(squad_metrics.f1(p, x) for x in r) / len(r) for p, r in zip(predictions, references, strict=True)]
    if abs(got - expected / 100) < 1e-6:
        hint = "SQuAD reports the corpus score in percent: multiply the mean by 100."
    elif abs(got - 100 * sum(per_question_first) / 4) < 1e-6:
        hint = "every reference answer counts: take each question's BEST F1 over its references, not the first one's."
    elif abs(got - 100 * sum(per_question_mean) / 4) < 1e-6:
        hint = "take the best (max) F1 over a question's references, not their mean."
    else:
        hint = "per question: max over its references of f1(prediction, reference); then the mean over questions x 100."
    raise CheckFailed(f"on {len(predictions)} questions with 1-2 references each the corpus F1 is {expected:.2f}, "
                      f"got {got:.2f}: {hint}")


# --- notebook 03 ------------------------------------------------------------------------------


def _lora_case(seed: int, n_in: int, n_out: int, rank: int) -> tuple[torch.Tensor, ...]:
    """Seeded x (2, 5, in), W (out, in), A (r, in), B (out, r); B non-zero, as after some training."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 5, n_in, generator=g), torch.randn(n_out, n_in, generator=g) / n_in**0.5,
            torch.randn(rank, n_in, generator=g) / n_in**0.5, torch.randn(n_out, rank, generator=g) * 0.5)


def _reference_lora(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, alpha: float):
    """``utils.lora.LoRALinear`` around a bias-free linear layer with weight W, holding A and B."""
    from utils import lora

    base = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    layer = lora.LoRALinear(base, rank=A.shape[0], alpha=alpha)
    with torch.no_grad():
        base.weight.copy_(W)
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
    return layer


_LORA_CASES = [(0, 12, 7, 3, 6.0), (1, 10, 20, 4, 16.0)]  # seed, in, out, r, alpha: alpha/r, alpha, sqrt differ


def _scaling_hint(got: torch.Tensor, base: torch.Tensor, update: torch.Tensor, rank: int, alpha: float,
                  n_out: int) -> str:
    """Name the usual mistake when ``got = base + s * update`` for a wrong s (or without the base)."""
    for s, hint in ((1.0, "scale the update by alpha / r (here r = A.shape[0])."),
                    (alpha, "the scaling is alpha / r, not alpha."),
                    (alpha / rank**0.5, "alpha / sqrt(r) is rsLoRA's scaling; plain LoRA uses alpha / r."),
                    (alpha / n_out, "r is A.shape[0] (A is (r, in)); B.shape[0] is the layer's out_features."),
                    (rank / alpha, "the scaling is alpha / r, not r / alpha.")):
        if torch.allclose(got, base + s * update, atol=1e-4, rtol=1e-4):
            return hint
    if torch.allclose(got, alpha / rank * update, atol=1e-4, rtol=1e-4):
        return "add the frozen layer's own part: the update comes on top of W (or x W^T)."
    return ""


def check_lora_forward(lora_forward: Callable) -> str:
    """``lora_forward(x, W, A, B, alpha)``: x W^T + (alpha/r) x A^T B^T, compared with ``utils.lora.LoRALinear``."""
    for seed, n_in, n_out, rank, alpha in _LORA_CASES:
        x, W, A, B = _lora_case(seed, n_in, n_out, rank)
        with torch.no_grad():
            expected = _reference_lora(W, A, B, alpha)(x)
        try:
            got = _call(lora_forward, x.clone(), W.clone(), A.clone(), B.clone(), alpha)
        except CheckFailed as err:
            if "RuntimeError" in str(err):
                raise CheckFailed(f"{err} Check the transposes: x is (..., in), W is (out, in), A is (r, in) and B is "
                                  "(out, r), so y = x @ W.T + scaling * (x @ A.T) @ B.T.") from None
            raise
        got = torch.as_tensor(got).detach().float()
        if got.shape != expected.shape:
            raise CheckFailed(f"x of shape {tuple(x.shape)} should give y of shape {tuple(expected.shape)} "
                              f"(..., out), got {tuple(got.shape)}: check the transposes.")
        if torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
            continue
        hint = _scaling_hint(got, x @ W.T, (x @ A.T) @ B.T, rank, alpha, n_out) or \
            "y = x @ W.T + (alpha / r) * (x @ A.T) @ B.T."
        raise CheckFailed(f"in={n_in}, out={n_out}, r={rank}, alpha={alpha:g}: the output differs from LoRALinear's "
                          f"by up to {float((got - expected).abs().max()):.3g}. {hint}")
    return "✓ lora_forward equals utils.lora.LoRALinear's output."


def check_merge(merge: Callable) -> str:
    """``merge(W, A, B, alpha) -> W'``: W + (alpha/r) B A, compared with ``LoRALinear.merge()``."""
    for seed, n_in, n_out, rank, alpha in _LORA_CASES:
        _, W, A, B = _lora_case(seed, n_in, n_out, rank)
        layer = _reference_lora(W, A, B, alpha)
        layer.merge()
        expected = layer.base.weight.detach()
        try:
            got = _call(merge, W.clone(), A.clone(), B.clone(), alpha)
        except CheckFailed as err:
            if "RuntimeError" in str(err):
                raise CheckFailed(f"{err} The update is B @ A: (out, r) @ (r, in) = (out, in), W's shape.") from None
            raise
        got = torch.as_tensor(got).detach().float()
        if got.shape != expected.shape:
            raise CheckFailed(f"the merged weight has W's shape {tuple(W.shape)} (out, in), got {tuple(got.shape)}: "
                              "the update is B @ A (not A.T @ B.T, which is its transpose).")
        if torch.allclose(got, expected, atol=1e-5, rtol=1e-5):
            continue
        hint = _scaling_hint(got, W, B @ A, rank, alpha, n_out) or "W' = W + (alpha / r) * B @ A."
        raise CheckFailed(f"in={n_in}, out={n_out}, r={rank}, alpha={alpha:g}: your merged weight differs from "
                          f"LoRALinear.merge()'s by up to {float((got - expected).abs().max()):.3g}. {hint}")
    return "✓ merge gives the weight LoRALinear.merge() writes: x @ W'.T equals the unmerged layer's output."


def check_rank_for_budget(rank_for_budget: Callable) -> str:
    """``rank_for_budget(layer_shapes, budget) -> int``: the largest r with r * sum(in + out) <= budget."""
    from utils import lora

    bert_attention = [(384, 384)] * 4
    bert_block = [(384, 384)] * 4 + [(1536, 384), (384, 1536)]
    phi2_block = [(2560, 2560)] * 4 + [(10240, 2560), (2560, 10240)]
    exact = 8 * sum(n_in + n_out for n_out, n_in in bert_block)  # rank 8 uses the budget exactly
    cases = [(bert_attention, 100_000), (bert_block, exact), (phi2_block, 5_000_000), (bert_block, 5000),
             ([(7, 5), (3, 11)], 100)]
    for shapes, budget in cases:
        expected = 0  # count up with the library's own per-layer count until the next rank no longer fits
        while sum(lora.lora_parameter_count(n_in, n_out, expected + 1) for n_out, n_in in shapes) <= budget:
            expected += 1
        got = _call(rank_for_budget, list(shapes), budget)
        if got == expected and float(got).is_integer():
            continue
        where = f"layer shapes {shapes if len(shapes) < 3 else f'{shapes[:2]} ... ({len(shapes)} layers)'}, budget {budget:,}"
        per_rank = sum(n_in + n_out for n_out, n_in in shapes)
        if got is None or not float(got).is_integer():
            hint = "a rank is a whole number: round down (//), and return 0 if not even r = 1 fits."
        elif got == expected - 1 and expected * per_rank == budget:
            hint = "a rank whose count equals the budget exactly still fits: the test is <=, not <."
        elif got == budget // (shapes[0][0] + shapes[0][1]) or got == budget // (shapes[-1][0] + shapes[-1][1]):
            hint = "count every layer: one rank costs the sum over ALL layers of (in + out)."
        elif got > expected:
            hint = f"rank {got} needs {got * per_rank:,} parameters, over the budget: round down."
        else:
            hint = "one rank costs sum over the layers of (in + out) parameters (A is r x in, B is out x r)."
        raise CheckFailed(f"{where}: expected r = {expected}, got {got}. {hint}")
    return "✓ rank_for_budget picks the largest rank that fits, for every budget."


# --- notebook 06 ------------------------------------------------------------------------------


def check_macro_f1(macro_f1: Callable) -> str:
    """``macro_f1(y_true, y_pred, n_classes) -> float``, compared with scikit-learn's ``f1_score(average="macro")``.

    Every class 0..n_classes-1 occurs in ``y_true`` in the test cases (no 0/0 ambiguity); some are
    never predicted, and those count as F1 = 0.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    cases = [([0, 0, 0, 0, 1, 1, 2, 2, 2, 3], [0, 0, 1, 0, 1, 2, 2, 2, 0, 0], 4),  # class 3 never predicted
             ([0, 1, 1, 2, 2, 2, 2, 2], [2, 2, 2, 2, 2, 2, 2, 2], 3),  # a majority-class predictor
             ([0, 1, 2, 0, 1, 2, 1, 1], [0, 2, 1, 0, 1, 2, 1, 0], 3)]
    for y_true, y_pred, n in cases:
        labels = list(range(n))
        expected = f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)
        got = float(_call(macro_f1, list(y_true), list(y_pred), n))
        if abs(got - expected) < 1e-9:
            continue
        per_class = f1_score(y_true, y_pred, average=None, labels=labels, zero_division=0)
        predicted = sorted(set(y_pred))
        if abs(got - 100 * expected) < 1e-6:
            hint = "return a number between 0 and 1, not a percentage."
        elif abs(got - accuracy_score(y_true, y_pred)) < 1e-9:
            hint = ("that is accuracy (the micro-average over examples); macro-F1 is the mean of the per-class F1 "
                    "scores, every class counting once however many examples it has.")
        elif abs(got - f1_score(y_true, y_pred, average="weighted", labels=labels, zero_division=0)) < 1e-9:
            hint = "you weighted the classes by their size; macro gives every class the same weight."
        elif abs(got - sum(per_class[c] for c in predicted) / len(predicted)) < 1e-9:
            hint = (f"a class that is never predicted (here {sorted(set(labels) - set(predicted))}) has F1 = 0 and "
                    "still counts in the average: divide by n_classes.")
        elif abs(got - precision_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)) < 1e-9 or \
                abs(got - recall_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)) < 1e-9:
            hint = "that is macro precision or recall; each class's F1 is 2PR / (P + R) = 2TP / (2TP + FP + FN)."
        else:
            hint = "per class c: F1_c = 2TP / (2TP + FP + FN) (0 when that is 0/0); macro-F1 = their mean over all classes."
        raise CheckFailed(f"y_true={y_true}, y_pred={y_pred}: macro-F1 is {expected:.4f} (per class "
                          f"{[round(float(f), 3) for f in per_class]}), got {got:.4f}. {hint}")
    return "✓ macro_f1 matches sklearn.metrics.f1_score(average='macro')."


def _majority(train_labels: list[int], test_labels: list[int]) -> dict[str, float]:
    """``utils.classification.majority_baseline`` on a DatasetDict built from the two label lists."""
    import datasets

    from utils import classification

    names = [f"class {i}" for i in range(max(train_labels + test_labels) + 1)]
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    parts = {split: datasets.Dataset.from_dict({"text": ["x"] * len(y), "label": y}, features=features)
             for split, y in (("train", train_labels), ("test", test_labels))}
    return classification.majority_baseline(datasets.DatasetDict(parts))


def check_majority_accuracy(majority_accuracy: Callable) -> str:
    """``majority_accuracy(train_labels, test_labels) -> float``: the majority-class baseline's test accuracy."""
    from collections import Counter

    cases = [([0, 1, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2, 2, 2, 2]),  # train's majority (1) is not the test's (2)
             ([3, 3, 3, 0, 1, 2, 3, 1], [0, 1, 2, 3, 3])]
    for train, test in cases:
        expected = _majority(train, test)["accuracy"]
        got = float(_call(majority_accuracy, list(train), list(test)))
        if abs(got - expected) < 1e-9:
            continue
        test_majority = Counter(test).most_common(1)[0][0]
        train_majority = Counter(train).most_common(1)[0][0]
        if abs(got - 100 * expected) < 1e-6:
            hint = "return a number between 0 and 1, not a percentage."
        elif abs(got - test.count(test_majority) / len(test)) < 1e-9:
            hint = ("you took the most frequent class of the TEST labels; the baseline learns it from the training "
                    "labels (the test labels are not known when predicting).")
        elif abs(got - train.count(train_majority) / len(train)) < 1e-9:
            hint = "score it on the test labels: the share of TEST rows whose label is the training majority class."
        elif abs(got - 1 / len(set(train) | set(test))) < 1e-9:
            hint = "the baseline always answers the most frequent class; its accuracy is not 1 / number of classes."
        else:
            hint = ("find the most frequent training label (Counter(train).most_common(1)), predict it for every test "
                    "row, and return the share of test rows it gets right.")
        raise CheckFailed(f"train={train}, test={test}: expected {expected:.4f}, got {got:.4f}. {hint}")
    return "✓ majority_accuracy matches utils.classification.majority_baseline."


def check_label_ids(label_ids: Callable) -> str:
    """``label_ids(labels) -> (names, ids)``: sorted class names and each label's id, like
    ``utils.classification.load_labelled`` (and scikit-learn's ``LabelEncoder``) assign them."""
    from sklearn.preprocessing import LabelEncoder

    cases = [["shipping", "billing", "login", "billing", "refund", "shipping"], [10, 2, 1, 2, 10, 1, 2]]
    for labels in cases:
        encoder = LabelEncoder().fit(labels)
        names, ids = [str(c) for c in encoder.classes_], [int(i) for i in encoder.transform(labels)]
        out = _call(label_ids, list(labels))
        if not (isinstance(out, tuple) and len(out) == 2):
            raise CheckFailed("`label_ids` should return a pair `(names, ids)`.")
        got_names, got_ids = [str(n) for n in out[0]], [int(i) for i in out[1]]
        if got_names != names:
            if len(got_names) != len(set(got_names)):
                hint = "list every class once (a set of the labels, then sorted)."
            elif got_names == list(dict.fromkeys(str(x) for x in labels)):
                hint = "sort the names, so the ids do not depend on which row comes first."
            elif got_names == sorted(names):
                hint = "sort the label values themselves, not their str(): as numbers 2 comes before 10."
            else:
                hint = "names = the distinct labels, sorted."
            raise CheckFailed(f"labels {labels}: names should be {names}, got {got_names}. {hint}")
        if got_ids != ids:
            raise CheckFailed(f"labels {labels}: ids should be {ids}, got {got_ids}. The id of a label is its "
                              "position in names (names.index(label)); one id per label, in the labels' order.")
    return "✓ label_ids numbers the classes as utils.classification.load_labelled does."
