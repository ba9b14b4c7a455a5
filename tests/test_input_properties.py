"""Property-based tests (hypothesis) of three input-facing parts: the SQuAD metrics (utils.evaluation.squad), the
labelled-data loader on CSV/TSV files (utils.classification.load_labelled) and the 4-bit quantizers
(utils.lessons.quant).

Each property holds for every input hypothesis draws: arbitrary text (empty, punctuation only, unicode, commas,
quotes, newlines), arbitrary junk where a string belongs, arbitrary tensor shapes and float32 values (zeros,
subnormals, one element, sizes that are not a multiple of the block size). The outcome is a correct result or an
:class:`utils.errors.InputError` (ValueError/TypeError for the quantizers' arguments), never another exception.
Seeded and repeatable (``derandomize``, no example database); the examples take about 5 s, the file with its
imports about 15 s on 2 CPU cores.
"""

from __future__ import annotations

import csv
import math
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from utils import classification as clf
from utils.errors import InputError
from utils.evaluation import squad
from utils.lessons import quant as Q

SEEDED = {"deadline": None, "derandomize": True, "database": None}

# ------------------------------------------------------------------------------------------- SQuAD
NASTY = ["", " ", "!!!", "The", "a an the", "...", "Ünïcödé straße", "İstanbul", "ß", "l'été", "  A  ", "\t\n",
         "0", "007", "NaN", "None", "True", "—", "日本語", "e\u0301", "🙂"]
texts = st.one_of(st.sampled_from(NASTY),
                  st.text(st.characters(blacklist_categories=("Cs",)), max_size=25),
                  st.text(st.sampled_from(list("aAtThHeEn .,!?'-\"")), max_size=20))
junk = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.binary(max_size=4),
                 st.lists(texts, max_size=2), st.dictionaries(st.sampled_from(["answer_start", "txt"]), st.integers(),
                                                              max_size=2))
# one question's references, in every accepted form, and bad ones
good_refs = st.one_of(texts, st.lists(texts, min_size=1, max_size=3),
                      st.lists(texts, min_size=1, max_size=3).map(lambda t: {"text": t, "answer_start": [0] * len(t)}),
                      st.lists(texts, min_size=1, max_size=3).map(lambda t: [{"text": x, "answer_start": 0} for x in t]))
bad_refs = st.one_of(junk, st.just([]), st.lists(junk, min_size=1, max_size=2),
                     st.dictionaries(st.sampled_from(["answer_start", "id"]), st.integers(), max_size=2),
                     st.just({"text": []}), st.just([["nested"]]))


def _answers(refs) -> list[str]:
    """The reference strings of a well-formed ``refs`` (any of the accepted forms)."""
    if isinstance(refs, str):
        return [refs]
    if isinstance(refs, dict):
        return list(refs["text"])
    return [r["text"] if isinstance(r, dict) else r for r in refs]


@settings(max_examples=150, **SEEDED)
@given(prediction=texts, reference=texts)
def test_per_answer_metrics_are_floats_in_range_and_consistent(prediction, reference):
    """EM is 0.0 or 1.0 and F1 a float in [0, 1]; F1 = 1 when EM = 1, except that an answer normalising to nothing
    ('The', '!!!') has F1 0 even against an equally empty reference (the official v1.1 rule, in the module's
    docstring); a text against itself has EM 1, and F1 1 unless it normalises to nothing."""
    em, f = squad.exact_match(prediction, reference), squad.f1(prediction, reference)
    assert type(em) is float and em in (0.0, 1.0)
    assert type(f) is float and 0.0 <= f <= 1.0
    empty = squad.normalize_answer(prediction) == ""
    if em == 1.0:
        assert f == (0.0 if empty else 1.0)
    assert squad.exact_match(prediction, prediction) == 1.0
    assert squad.f1(prediction, prediction) == (0.0 if empty else 1.0)
    assert isinstance(squad.normalize_answer(prediction), str)


@settings(max_examples=120, **SEEDED)
@given(rows=st.lists(st.tuples(texts, good_refs), min_size=1, max_size=6))
def test_squad_scores_on_any_text_in_any_reference_form(rows):
    """Percentages in [0, 100]; per question the best over its references (a string is one reference, a dict its
    'text' list); EM <= F1 per question unless the prediction normalises to nothing; every prediction scored
    against its own answers gives EM 100."""
    predictions, references = [p for p, _ in rows], [r for _, r in rows]
    scores = squad.squad_scores(predictions, references)
    assert scores["n"] == len(rows)
    for key in ("exact_match", "f1"):
        assert type(scores[key]) is float and 0.0 <= scores[key] <= 100.0
    for p, r, em, f in zip(predictions, references, scores["per_question_em"], scores["per_question_f1"], strict=True):
        answers = _answers(r)
        assert em == max(squad.exact_match(p, a) for a in answers)
        assert f == max(squad.f1(p, a) for a in answers)
        if squad.normalize_answer(p):
            assert em <= f
    if all(squad.normalize_answer(p) for p in predictions):
        assert scores["exact_match"] <= scores["f1"]
    itself = squad.squad_scores([_answers(r)[0] for r in references], references)
    assert itself["exact_match"] == 100.0


@settings(max_examples=150, **SEEDED)
@given(rows=st.lists(st.tuples(st.one_of(texts, junk), st.one_of(good_refs, bad_refs)), min_size=1, max_size=4),
       extra=st.integers(0, 1))
def test_squad_scores_on_bad_input_is_an_input_error_or_right(rows, extra):
    """Junk where a prediction or a reference belongs (None, numbers, bytes, nested lists, dicts without 'text',
    empty reference lists) and lists of unequal length: an InputError naming the question, or (if every entry is
    well formed after all) the scores of the well-formed call; never another exception."""
    predictions, references = [p for p, _ in rows], [r for _, r in rows] + [["x"]] * extra
    try:
        scores = squad.squad_scores(predictions, references)
    except InputError as err:
        note(str(err))
        assert ". Fix: " in str(err)
        return
    assert not extra and all(isinstance(p, str) for p in predictions)
    good = [_answers(r) for r in references]  # fails (TypeError/KeyError) if a bad form slipped through
    assert all(good) and all(isinstance(a, str) for answers in good for a in answers)
    assert scores == squad.squad_scores(predictions, good)


@settings(max_examples=60, **SEEDED)
@given(value=junk)
def test_per_answer_metrics_refuse_what_is_not_a_string(value):
    for call in (lambda: squad.normalize_answer(value), lambda: squad.exact_match(value, "a"),
                 lambda: squad.f1("a", value)):
        with pytest.raises(InputError, match="not a string"):
            call()


# --------------------------------------------------------------------------------- labelled CSV files
# cells a CSV reader is known to reinterpret (numbers with leading zeros, NaN/None/NA, booleans, empty), and
# cells that need quoting (commas, quotes, line breaks)
CELLS = ["007", "0", "-1", "1.0", "1e3", "NaN", "nan", "None", "NA", "N/A", "null", "True", "false", "", " ",
         "#N/A", "  padded  ", 'say "hi"', "a,b", "two\nlines", "cr\rlf", "tab\there", "ünï ☃", "=1+1", "'quoted'"]
cell = st.one_of(st.sampled_from(CELLS), st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                                 min_size=1, max_size=12))
labels = st.one_of(st.sampled_from(["007", "7", "NaN", "True", "1.0", "1", "10", "2", "None", "", "a,b", "x\ny", "B"]),
                   st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
                           max_size=6))


def _write(path: Path, header: tuple[str, str], rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t" if path.suffix == ".tsv" else ",")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _pairs(dataset) -> Counter:
    names = clf.label_names(dataset)
    return Counter((t, names[i]) for part in dataset.values() for t, i in zip(part["text"][:], part["label"][:],
                                                                              strict=True))


def _loaded_or_refused(source, **kwargs):
    """``clf.load_labelled(source, **kwargs)``, or None where it refuses with our InputError (which must say how to
    fix it); hypothesis' statistics count each outcome."""
    try:
        loaded = clf.load_labelled(source, **kwargs)
    except InputError as err:
        note(str(err))
        event(f"refused: {str(err).split(': ', 1)[-1][:40]}")
        assert ". Fix: " in str(err)
        return None
    event("loaded")
    return loaded


@settings(max_examples=40, **SEEDED)
@given(texts_=st.lists(cell, min_size=4, max_size=12, unique_by=lambda t: " ".join(t.split())),
       classes=st.lists(labels, min_size=2, max_size=3, unique=True), suffix=st.sampled_from([".csv", ".tsv"]))
def test_a_csv_loads_exactly_as_written_or_is_refused(texts_, classes, suffix):
    """Every text and label comes back as the string written in the file ('007' stays '007', 'NaN', 'None' and
    'True' stay strings, never a number, a missing value or a bool), or the loader refuses the file with an
    InputError (an empty text or label, labels spelled two ways such as '7' and '007', a class with one row)."""
    rows = [(t, classes[i % len(classes)]) for i, t in enumerate(texts_)]
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder) / f"data{suffix}", ("text", "label"), rows)
        loaded = _loaded_or_refused(path, test_size=0.5)
    if loaded is None:
        return
    names = clf.label_names(loaded)
    assert all(type(n) is str for n in names) and sorted(names, key=str) == sorted(set(classes), key=str)
    assert _pairs(loaded) == Counter(rows)


@settings(max_examples=25, **SEEDED)
@given(texts_=st.lists(cell, min_size=6, max_size=14, unique_by=lambda t: " ".join(t.split())),
       cut=st.integers(4, 10), held=st.sampled_from(["validation", "test", "dev"]))
def test_named_splits_of_a_folder_are_never_mixed(texts_, cut, held):
    """A folder with train.csv and validation.csv (or test.csv, dev.csv): the loaded train split is exactly
    train.csv's rows, in order, and the held-out split exactly the other file's, whatever the texts; or an
    InputError."""
    cut = min(cut, len(texts_) - 2)
    rows = [(t, "ab"[i % 2]) for i, t in enumerate(texts_)]
    with tempfile.TemporaryDirectory() as folder:
        _write(Path(folder) / "train.csv", ("text", "label"), rows[:cut])
        _write(Path(folder) / f"{held}.csv", ("text", "label"), rows[cut:])
        loaded = _loaded_or_refused(folder)
    if loaded is None:
        return
    names = clf.label_names(loaded)
    assert set(loaded) == {"train", "test"}
    for split, expected in (("train", rows[:cut]), ("test", rows[cut:])):
        part = loaded[split]
        assert list(zip(part["text"][:], [names[i] for i in part["label"][:]], strict=True)) == expected


# ------------------------------------------------------------------------------------------ quantizers
F32 = torch.finfo(torch.float32)
values = st.one_of(st.floats(width=32, allow_nan=False, allow_infinity=False),  # the whole float32 range
                   st.floats(-4.0, 4.0, width=32),
                   st.sampled_from([0.0, -0.0, F32.tiny, 1e-45, -1.0, 1.0, 65504.0, 1e6, 3e38, -3e38, F32.max, -F32.max]))


ANY_SHAPE = st.lists(st.integers(1, 9), max_size=3).filter(lambda s: math.prod(s) <= 200)
Q4_1_SHAPES = st.sampled_from([(32,), (2, 32), (64,), (4, 8), (3, 32), (2, 2, 24)])


@st.composite
def tensors(draw, shapes=ANY_SHAPE):
    """A float tensor of 0 to 3 dimensions (a 0-d scalar included) holding arbitrary finite float32 values,
    cast to float32, float16 or bfloat16 (clamped to that type's range)."""
    shape = draw(shapes)
    data = draw(st.lists(values, min_size=math.prod(shape), max_size=math.prod(shape)))
    dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float16, torch.bfloat16]))
    limit = torch.finfo(dtype).max
    return torch.tensor(data, dtype=torch.float32).reshape(shape).clamp(-limit, limit).to(dtype)


def _half_gap(method: str) -> float:
    """Half the largest gap between adjacent levels of a table method (its levels span [-1, 1])."""
    levels = Q.levels(method).double().sort().values
    return float((levels[1:] - levels[:-1]).max()) / 2


def _rounding(x_hat: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """What casting the float32 reconstruction to ``dtype`` may add: half a unit in the last place, or half the
    subnormal spacing."""
    info = torch.finfo(dtype)
    return x_hat.abs() * info.eps / 2 + info.smallest_normal * info.eps / 2


@settings(max_examples=120, **SEEDED)
@given(x=tensors(), method=st.sampled_from(Q.METHODS), blocksize=st.one_of(st.integers(1, 70), st.just(64)))
def test_fake_quantize_keeps_the_shape_and_bounds_the_error(x, method, blocksize):
    """The reconstruction has the input's shape and dtype, and each element is off by at most half the format's
    largest gap between adjacent levels times its block's absmax (int4_asym: half its step, (max - min) / 30 over
    the block's range widened to include 0), plus float32 rounding (2^-20 of the scale) and the rounding to the
    input's dtype. A block whose absmax is below 1e-38 is scaled as if it were 1e-38 (as bitsandbytes does): its
    error is at most its absmax. A block whose range overflows float32 (int4_asym) is a ValueError."""
    flat = x.reshape(-1).double()
    pad = (-flat.numel()) % blocksize
    blocks = torch.nn.functional.pad(flat, (0, pad)).view(-1, blocksize)
    if method == "int4_asym":
        last = flat[-(blocksize - pad):] if pad else blocks[-1]
        lo, hi = blocks.min(dim=1).values.clamp(max=0), blocks.max(dim=1).values.clamp(min=0)
        lo[-1], hi[-1] = min(float(last.min()), 0.0), max(float(last.max()), 0.0)
        if bool((hi.float() - lo.float()).isinf().any()):  # as the quantizer computes it, in float32
            with pytest.raises(ValueError, match="overflows float32"):
                Q.fake_quantize(x, method, blocksize)
            return
        scale = ((hi - lo) / 15).clamp(min=F32.tiny)
        bound = scale / 2 + scale * 2**-20
    else:
        absmax = blocks.abs().max(dim=1).values
        bound = torch.where(absmax < 1e-38, absmax, absmax * (_half_gap(method) + 2**-20))
    x_hat = Q.fake_quantize(x, method, blocksize)
    assert x_hat.shape == x.shape and x_hat.dtype == x.dtype
    error = (x_hat.double().reshape(-1) - flat).abs()
    allowed = bound.repeat_interleave(blocksize)[:flat.numel()] + _rounding(x_hat.double().reshape(-1), x.dtype)
    worst = int((error - allowed).argmax())
    assert bool((error <= allowed).all()), (f"element {worst}: |error| {float(error[worst]):.6g} > "
                                            f"{float(allowed[worst]):.6g} ({x.dtype})")


@settings(max_examples=60, **SEEDED)
@given(x=tensors(Q4_1_SHAPES))
def test_q4_1_keeps_the_shape_and_bounds_the_error(x):
    """GGUF Q4_1: the input's shape back (float32); each element off by at most half the block's step,
    (max - min) / 30, plus what storing the minimum and the step in float16 costs (|min - min16| + 15 |step -
    step16|) and float32 rounding; a block whose constants do not fit float16 is a ValueError."""
    blocks = x.reshape(-1, 32).float()
    low, high = blocks.min(dim=1).values, blocks.max(dim=1).values
    step = (high - low) / 15  # in float32, as the quantizer computes them
    if not bool(low.half().isfinite().all() and step.half().isfinite().all()):
        with pytest.raises(ValueError, match="float16"):
            Q.quantize_q4_1(x)
        return
    blocks, low, high, step = blocks.double(), low.double(), high.double(), step.double()
    q = Q.quantize_q4_1(x)
    x_hat = Q.dequantize_q4_1(q)
    assert x_hat.shape == x.shape
    low16, step16 = q.minimum.double(), q.step.double()
    bound = step / 2 + (low - low16).abs() + 15 * (step - step16).abs() + (low.abs() + high.abs()) * 2**-20
    error = (x_hat.double().reshape(-1, 32) - blocks).abs()
    assert bool((error <= bound[:, None] + F32.tiny).all())


@settings(max_examples=40, **SEEDED)
@given(x=tensors(), bad=st.sampled_from([math.nan, math.inf, -math.inf]),
       method=st.sampled_from(Q.METHODS))
def test_nan_and_inf_are_refused(x, bad, method):
    """The quantizers do not claim to handle NaN or inf: any such value is a clear ValueError."""
    x = x.clone().reshape(-1)
    x[len(x) // 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        Q.quantize_4bit(x, method, 64)


bad_blocksizes = st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.booleans(), st.none(),
                           st.text(max_size=3), st.just([64]))
bad_methods = st.one_of(st.text(max_size=6).filter(lambda m: m not in Q.METHODS), st.none(), st.integers(),
                        st.just(["nf4"]), st.just("NF4"))


@settings(max_examples=60, **SEEDED)
@given(blocksize=bad_blocksizes, method=bad_methods, good=st.integers(1, 4096))
def test_degenerate_arguments_are_clear_errors(blocksize, method, good):
    """A block size of 0, negative, fractional, boolean or not a number, and an unknown format name: a ValueError
    naming the argument, from every helper that takes them (never a ZeroDivisionError or KeyError)."""
    x = torch.randn(10)
    for call in (lambda: Q.quantize_4bit(x, "nf4", blocksize), lambda: Q.fake_quantize(x, "int4_asym", blocksize),
                 lambda: Q.bits_per_parameter(blocksize), lambda: Q.bits_per_parameter(64, True, blocksize),
                 lambda: Q.double_quantize(x.abs(), blocksize), lambda: Q.error_sweep(x, ["nf4"], [blocksize])):
        with pytest.raises(ValueError, match="blocksize must be a positive integer"):
            call()
    for call in (lambda: Q.quantize_4bit(x, method, good), lambda: Q.levels(method),
                 lambda: Q.bits_per_parameter(good, method=method), lambda: Q.error_sweep(x, [method], [good])):
        with pytest.raises(ValueError, match="unknown method"):
            call()
    assert Q.bits_per_parameter(good) == 4 + 32 / good
    assert Q.bits_per_parameter(good, method="int4_asym") == 4 + 40 / good


@settings(max_examples=40, **SEEDED)
@given(n=st.integers(0, 40), claimed=st.integers(-3, 45))
def test_pack_and_unpack_round_trip_and_refuse_a_wrong_count(n, claimed):
    """Codes packed two per byte come back exactly; asking for more codes than the bytes hold, or fewer than
    their count, is a ValueError (not invented or silently dropped codes)."""
    codes = torch.randint(0, 16, (n,), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    packed = Q.pack_4bit(codes)
    assert packed.numel() == (n + 1) // 2 and torch.equal(Q.unpack_4bit(packed, n), codes)
    if claimed not in (2 * packed.numel() - 1, 2 * packed.numel()) and claimed != n:
        with pytest.raises(ValueError, match="n must be the number of packed codes"):
            Q.unpack_4bit(packed, claimed)
