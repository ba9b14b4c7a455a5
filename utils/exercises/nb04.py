"""The exercise checks of notebook 04 (QLoRA fine-tuning of Phi-2 for QA): each says in plain words what is wrong."""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable

import torch

from utils.exercises.common import CheckFailed, Choice, _call, _int_list, _number, _passed


class _CharTokenizer:
    """A one-token-per-character stand-in for a real tokenizer (ids = code points, EOS = 0).

    It has the interface :func:`utils.qa.data.encode_example` uses, so the checkers can compare
    with the course's own encoding without loading a model's tokenizer.
    """

    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False, return_offsets_mapping: bool = False) -> dict:
        out: dict[str, list] = {"input_ids": [ord(c) for c in text]}
        if return_offsets_mapping:
            out["offset_mapping"] = [(i, i + 1) for i in range(len(text))]
        return out


def _all_qa_rows() -> list[dict]:
    from utils.paths import REPO_ROOT
    from utils.qa.data import load_squad_json

    return load_squad_json(REPO_ROOT / "data/qa/train.json")


def _qa_rows(n: int) -> list[dict]:
    return _all_qa_rows()[:n]


def _label_cases(hidden: bool) -> list[tuple[list[int], int]]:
    """``(input_ids, prompt_length)`` pairs. Public: a 5-token toy and the first 4 training rows at 200 tokens.
    Hidden: an answer that is only the end-of-text id 0, a one-token prompt whose ids recur in the answer, 23
    seeded random ids, and 3 seeded rows beyond the first 4 at other max_lengths (one of them not truncated)."""
    from utils.qa.data import encode_example

    if not hidden:
        cases = [([11, 12, 13, 14, 15], 3)]
        for row in _qa_rows(4):  # real examples, encoded by the course's own code (one token per character)
            enc = encode_example(row, _CharTokenizer(), max_length=200)
            cases.append((enc.input_ids, enc.prompt_length))
        return cases
    rng = random.Random(404)
    cases = [([7, 7, 7, 0], 3), ([101, 5, 101, 5, 9, 0], 1), ([rng.randrange(1, 50_000) for _ in range(23)], 17)]
    rows = _all_qa_rows()
    for i, max_length in zip(rng.sample(range(4, len(rows)), 3), (160, 256, 600), strict=True):
        enc = encode_example(rows[i], _CharTokenizer(), max_length=max_length)
        cases.append((enc.input_ids, enc.prompt_length))
    return cases


def check_answer_only_labels(answer_only_labels: Callable, *, hidden: bool = False) -> str:
    """``answer_only_labels(input_ids, prompt_length) -> labels``: -100 on the prompt, the ids after it.

    ``hidden=True`` checks other inputs (see :func:`_label_cases`)."""
    from utils.qa.data import IGNORE_INDEX

    for input_ids, prompt_length in _label_cases(hidden):
        given = list(input_ids)
        labels = _call(answer_only_labels, given, prompt_length)
        if given != list(input_ids):
            raise CheckFailed("`answer_only_labels` changed `input_ids` in place: the model would then read -100 as "
                              "a token id. Build a new list (e.g. `labels = list(input_ids)`) and change that.")
        labels = _int_list(labels, f"answer_only_labels(<{len(input_ids)} ids>, {prompt_length})", hidden)
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
    return _passed("✓ answer_only_labels gives the same labels as utils.qa.data.encode_example.", hidden)


def _padding_cases(hidden: bool) -> list[tuple[list[int], int | None]]:
    """``(lengths, pad_to)`` pairs. Public: 4 and 8 lengths, to the longest and to 128. Hidden: 6 and 32 seeded
    lengths, to the longest, to 192 and to 256; a single example (to the longest: no padding; to 512); equal
    lengths; ``pad_to`` equal to the longest."""
    if not hidden:
        return [([10, 20, 30, 40], None), ([10, 20, 30, 40], 128), ([57, 61, 73, 64, 90, 58, 66, 71], None),
                ([57, 61, 73, 64, 90, 58, 66, 71], 128)]
    rng = random.Random(2048)
    six, many = [rng.randint(20, 180) for _ in range(6)], [rng.randint(5, 250) for _ in range(32)]
    return [(six, None), (six, 192), (many, None), (many, 256), ([77], None), ([5], 512), ([64, 64, 64], None),
            ([30, 64, 50], 64)]


def check_padding_waste(padding_waste: Callable, *, hidden: bool = False) -> str:
    """``padding_waste(lengths, pad_to=None) -> float``: share of a padded batch's tokens that are padding.

    ``pad_to=None`` pads every example to the longest one (dynamic padding); an integer pads to that
    many tokens (e.g. ``MAX_LENGTH``). Packing with nothing added (``DataCollatorWithFlattening``) keeps only real
    tokens. ``hidden=True`` checks other batches (see :func:`_padding_cases`).
    """
    from transformers import DataCollatorWithFlattening

    for lengths, pad_to in _padding_cases(hidden):
        features = [{"input_ids": list(range(1, n + 1))} for n in lengths]
        packed = DataCollatorWithFlattening()(features)["input_ids"].shape[1]  # real tokens only
        padded = len(lengths) * (pad_to or max(lengths))
        expected = 1 - packed / padded
        got = _number(_call(padding_waste, list(lengths), pad_to), f"padding_waste({lengths}, {pad_to})", hidden)
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
    return _passed("✓ padding_waste is right: packing with nothing added saves exactly this share of the tokens "
                   "processed.", hidden)


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


def _adam_sizes(hidden: bool) -> tuple[int, ...]:
    """Tensor sizes tried. Public: 1000, 4096, 5000, 65536, 100000. Hidden: a single value, one partial block,
    either side of the 4096 threshold, one value past a block boundary, 16 x 1280, 1024 blocks + 1 value and a
    seeded size."""
    if not hidden:
        return 1000, 4096, 5000, 65536, 100000
    return 1, 255, 4095, 4097, 8193, 20480, 262145, random.Random(8).randrange(4097, 300_000)


def check_adam_state_bytes(adam_state_bytes: Callable, *, hidden: bool = False) -> str:
    """``adam_state_bytes(n_values, optimizer) -> int``: AdamW's moment memory for one trainable tensor.

    Counted: the two moments, plus for ``"paged_adamw_8bit"`` their block scales (one float32 absmax
    per 256 values per moment; tensors under 4096 values keep 32-bit moments). Not counted: the step
    counter and bitsandbytes' two fixed 256-entry quantization maps. Compared with what torch and
    bitsandbytes actually allocate after one step on the CPU. ``hidden=True`` checks other sizes
    (see :func:`_adam_sizes`).
    """
    for optimizer in ("adamw_torch", "paged_adamw_8bit"):
        for n in _adam_sizes(hidden):
            expected = _measured_adam_state(n, optimizer)
            got = _call(adam_state_bytes, n, optimizer)
            if hidden:
                got = _number(got, f"adam_state_bytes({n}, {optimizer!r})", hidden)
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
    return _passed("✓ adam_state_bytes matches the bytes torch and bitsandbytes allocate.", hidden)


WHY_INPUT_IDS_STAY = Choice(
    "nb04", "why_input_ids_stay",
    "Why must input_ids stay unchanged when the prompt's labels become -100?",
    {"a": "the tokenizer cannot encode -100",
     "b": "the model must still read the prompt to predict the answer: -100 removes prompt positions from the loss, "
          "not from the input",
     "c": "so that every batch keeps the same length"},
    "what does the model condition its prediction of the first answer token on?")


def check_why_input_ids_stay(answer: str | None, graded: bool = False) -> str:
    """Exercise 1's question: why only the labels, not the inputs, lose the prompt."""
    return WHY_INPUT_IDS_STAY.check(answer, graded)
