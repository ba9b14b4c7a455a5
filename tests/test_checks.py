"""Every exercise checker passes the solution and fails a wrong answer with a helpful message."""

from __future__ import annotations

import math

import pytest
import torch

from utils.exercises import common, nb01, nb02, nb03, nb04, nb05, nb06
from utils.lessons import quant


def absmax_int4(x):
    scale = x.abs().max()
    return torch.round(x / scale * 7), scale


def test_absmax_int4():
    assert nb01.check_absmax_int4(absmax_int4).startswith("✓")
    with pytest.raises(common.CheckFailed, match="not written yet"):
        nb01.check_absmax_int4(lambda x: (_ for _ in ()).throw(NotImplementedError))
    with pytest.raises(common.CheckFailed, match="scale should be the largest magnitude"):
        nb01.check_absmax_int4(lambda x: (torch.round(x / x.std()).clamp(-7, 7), x.std()))
    with pytest.raises(common.CheckFailed, match="nearest integer"):
        nb01.check_absmax_int4(lambda x: (torch.trunc(x / x.abs().max() * 7), x.abs().max()))


def test_bits_per_weight():
    assert nb01.check_bits_per_weight({"block 16 + double quant": 4 + 8 / 16 + 32 / (16 * 256), "block 512": 4.0625})
    with pytest.raises(common.CheckFailed, match="fill in"):
        nb01.check_bits_per_weight({"block 16 + double quant": None, "block 512": 4.0625})
    with pytest.raises(common.CheckFailed, match="one float32"):
        nb01.check_bits_per_weight({"block 16 + double quant": 4.5078, "block 512": 4.125})


def test_spoiled_block():
    assert nb01.check_spoiled_block(lambda rc, bs, shape: (rc[0] * shape[1] + rc[1]) // bs)
    with pytest.raises(common.CheckFailed, match="row-major"):
        nb01.check_spoiled_block(lambda rc, bs, shape: rc[1] // bs)


def test_nf4_levels():
    def mine():
        pos = torch.special.ndtri(torch.linspace(0.9677083, 0.5, 9)[:-1].double())
        neg = -torch.special.ndtri(torch.linspace(0.9677083, 0.5, 8)[:-1].double())
        levels = torch.cat([neg, torch.zeros(1, dtype=torch.float64), pos]).sort().values
        return (levels / levels.max()).float()

    assert "✓" in nb01.check_nf4_levels(mine)
    with pytest.raises(common.CheckFailed, match="exact zero"):
        nb01.check_nf4_levels(lambda: torch.linspace(-1, 1, 16))
    with pytest.raises(common.CheckFailed, match="16 levels"):
        nb01.check_nf4_levels(lambda: torch.linspace(-1, 1, 15))


def test_sqnr_and_p999_and_choose_blocksize():
    assert nb02.check_sqnr_db(lambda x, y: 10 * torch.log10((x**2).mean() / ((x - y) ** 2).mean()))
    with pytest.raises(common.CheckFailed, match="log10"):
        nb02.check_sqnr_db(lambda x, y: torch.log((x**2).mean() / ((x - y) ** 2).mean()))
    assert nb02.check_p999_error(lambda x, y: torch.quantile((x - y).abs(), 0.999))
    with pytest.raises(common.CheckFailed, match="0.999, not 99.9"):
        nb02.check_p999_error(lambda x, y: (x - y).abs().max())

    def choose(rows, floor):
        ok = [r["blocksize"] for r in rows if r["method"] == "nf4" and r["sqnr_db"] >= floor]
        return max(ok) if ok else None

    assert nb02.check_choose_blocksize(choose)
    with pytest.raises(common.CheckFailed, match="Keep only NF4 rows"):
        nb02.check_choose_blocksize(lambda rows, floor: min(r["blocksize"] for r in rows))


def test_check_inputs_avoid_rounding_ties():
    for x in common._inputs():
        scaled = (x / x.abs().max() * 7).abs()
        assert not torch.any((scaled - scaled.floor() - 0.5).abs() < 1e-6), "a tie would make two answers right"
    assert quant.int4_levels().numel() == 16


def _unwritten(*args):
    raise NotImplementedError


# --- notebook 04 ------------------------------------------------------------------------------


def test_answer_only_labels():
    assert "✓" in nb04.check_answer_only_labels(lambda ids, p: [-100] * p + list(ids[p:]))
    with pytest.raises(common.CheckFailed, match="not written yet"):
        nb04.check_answer_only_labels(_unwritten)
    with pytest.raises(common.CheckFailed, match="off-by-one"):
        nb04.check_answer_only_labels(lambda ids, p: [-100] * (p + 1) + list(ids[p + 1:]))
    with pytest.raises(common.CheckFailed, match="you masked the answer"):
        nb04.check_answer_only_labels(lambda ids, p: list(ids[:p]) + [-100] * (len(ids) - p))
    with pytest.raises(common.CheckFailed, match="0 is a real token id"):
        nb04.check_answer_only_labels(lambda ids, p: [0] * p + list(ids[p:]))

    def in_place(ids, p):
        ids[:p] = [-100] * p
        return ids

    with pytest.raises(common.CheckFailed, match="in place"):
        nb04.check_answer_only_labels(in_place)


def test_answer_only_labels_reference_is_encode_example():
    from utils.qa.data import encode_example

    row = nb04._qa_rows(1)[0]
    enc = encode_example(row, nb04._CharTokenizer(), max_length=200)
    answer = "".join(chr(i) for i in enc.input_ids[enc.prompt_length:-1])
    assert answer == " " + row["answers"]["text"][0] and enc.labels[enc.prompt_length - 1] == -100


def test_padding_waste():
    def waste(lengths, pad_to=None):
        return 1 - sum(lengths) / (len(lengths) * (pad_to or max(lengths)))

    assert "✓" in nb04.check_padding_waste(waste)
    assert waste([10, 20, 30, 40]) == pytest.approx(60 / 160)  # by hand: 160 slots, 100 real tokens
    with pytest.raises(common.CheckFailed, match="not written yet"):
        nb04.check_padding_waste(_unwritten)
    with pytest.raises(common.CheckFailed, match="ALL tokens of the padded batch"):
        nb04.check_padding_waste(lambda ls, pad_to=None: (len(ls) * (pad_to or max(ls)) - sum(ls)) / sum(ls))
    with pytest.raises(common.CheckFailed, match="not to the longest"):
        nb04.check_padding_waste(lambda ls, pad_to=None: 1 - sum(ls) / (len(ls) * max(ls)))
    with pytest.raises(common.CheckFailed, match="not a percentage"):
        nb04.check_padding_waste(lambda ls, pad_to=None: 100 * waste(ls, pad_to))


def test_adam_state_bytes():
    def state(n, optimizer):
        if optimizer == "adamw_torch" or n < 4096:
            return 8 * n
        return 2 * (n + 4 * math.ceil(n / 256))

    assert "✓" in nb04.check_adam_state_bytes(state)
    assert nb04._measured_adam_state(5000, "paged_adamw_8bit") == 2 * 5000 + 2 * 4 * 20  # 20 blocks, by hand
    with pytest.raises(common.CheckFailed, match="not written yet"):
        nb04.check_adam_state_bytes(_unwritten)
    with pytest.raises(common.CheckFailed, match="TWO moments"):
        nb04.check_adam_state_bytes(lambda n, o: 4 * n)
    with pytest.raises(common.CheckFailed, match="fewer than 4096"):
        nb04.check_adam_state_bytes(lambda n, o: 8 * n if o == "adamw_torch" else 2 * (n + 4 * math.ceil(n / 256)))
    with pytest.raises(common.CheckFailed, match="round the number of blocks up"):
        nb04.check_adam_state_bytes(lambda n, o: 8 * n if o == "adamw_torch" or n < 4096 else 2 * (n + 4 * (n // 256)))
    with pytest.raises(common.CheckFailed, match="add the block scales"):
        nb04.check_adam_state_bytes(lambda n, o: 8 * n if o == "adamw_torch" or n < 4096 else 2 * n)


# --- notebook 05 ------------------------------------------------------------------------------


def _normalize(text):
    import re
    import string

    text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def test_normalize_answer():
    assert "✓" in nb05.check_normalize_answer(_normalize)
    assert _normalize("Theatre of an answer") == "theatre of answer"  # by hand
    with pytest.raises(common.CheckFailed, match="not written yet"):
        nb05.check_normalize_answer(_unwritten)
    with pytest.raises(common.CheckFailed, match="lower-case"):
        nb05.check_normalize_answer(lambda t: _normalize(t) if t.islower() else t)

    def articles_first(text):
        import re
        import string

        text = re.sub(r"\b(a|an|the)\b", " ", text.lower())
        return " ".join("".join(ch for ch in text if ch not in string.punctuation).split())

    with pytest.raises(common.CheckFailed, match="BEFORE the articles"):
        nb05.check_normalize_answer(articles_first)

    def substring_articles(text):
        import string

        text = "".join(ch for ch in text.lower() if ch not in string.punctuation)
        for article in ("the", "an", "a"):
            text = text.replace(article, " ")
        return " ".join(text.split())

    with pytest.raises(common.CheckFailed, match="whole words"):
        nb05.check_normalize_answer(substring_articles)
    with pytest.raises(common.CheckFailed, match="collapse whitespace"):
        nb05.check_normalize_answer(lambda t: " ".join(_normalize(t).split(" ")) if "  " not in t else t.lower())


def _f1(prediction, truth):
    from collections import Counter

    pred, ref = _normalize(prediction).split(), _normalize(truth).split()
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    p, r = same / len(pred), same / len(ref)
    return 2 * p * r / (p + r)


def test_token_f1():
    assert "✓" in nb05.check_token_f1(_f1)
    assert _f1("in 1790", "1790") == pytest.approx(2 / 3)  # P = 1/2, R = 1
    with pytest.raises(common.CheckFailed, match="not written yet"):
        nb05.check_token_f1(_unwritten)

    def with_sets(prediction, truth):
        pred, ref = _normalize(prediction).split(), _normalize(truth).split()
        same = len(set(pred) & set(ref))
        return 0.0 if same == 0 else 2 * (same / len(pred)) * (same / len(ref)) / (same / len(pred) + same / len(ref))

    with pytest.raises(common.CheckFailed, match="multiplicity"):
        nb05.check_token_f1(with_sets)

    def plain_loop(prediction, truth):
        pred, ref = _normalize(prediction).split(), _normalize(truth).split()
        same = sum(t in ref for t in pred)
        return 0.0 if same == 0 else 2 * (same / len(pred)) * (same / len(ref)) / (same / len(pred) + same / len(ref))

    with pytest.raises(common.CheckFailed, match="multiplicity"):
        nb05.check_token_f1(plain_loop)

    def no_zero_guard(prediction, truth):
        from collections import Counter

        pred, ref = _normalize(prediction).split(), _normalize(truth).split()
        same = sum((Counter(pred) & Counter(ref)).values())
        p, r = same / len(pred), same / len(ref)
        return 2 * p * r / (p + r)

    with pytest.raises(common.CheckFailed, match="divided by zero"):
        nb05.check_token_f1(no_zero_guard)
    with pytest.raises(common.CheckFailed, match="normalise both strings"):
        nb05.check_token_f1(lambda p, t: _f1(p, t) if p.islower() or not p else float(p == t))

    def arithmetic(prediction, truth):
        from collections import Counter

        pred, ref = _normalize(prediction).split(), _normalize(truth).split()
        same = sum((Counter(pred) & Counter(ref)).values())
        return 0.0 if same == 0 else (same / len(pred) + same / len(ref)) / 2

    with pytest.raises(common.CheckFailed, match="harmonic mean"):
        nb05.check_token_f1(arithmetic)


def test_corpus_f1():
    from utils.evaluation import squad as squad_metrics

    def corpus(predictions, references):
        best = [max(squad_metrics.f1(p, r) for r in refs) for p, refs in zip(predictions, references, strict=True)]
        return 100 * sum(best) / len(best)

    assert nb05.check_corpus_f1(corpus).startswith("✓ corpus_f1 = 66.67")  # (1 + 2/3 + 1 + 0) / 4, by hand
    with pytest.raises(common.CheckFailed, match="not written yet"):
        nb05.check_corpus_f1(_unwritten)
    with pytest.raises(common.CheckFailed, match="in percent"):
        nb05.check_corpus_f1(lambda p, r: corpus(p, r) / 100)
    with pytest.raises(common.CheckFailed, match="not the first one's"):
        nb05.check_corpus_f1(lambda p, r: corpus(p, [x[:1] for x in r]))
    with pytest.raises(common.CheckFailed, match="not their mean"):
        nb05.check_corpus_f1(lambda ps, rs: 100 * sum(sum(squad_metrics.f1(p, x) for x in r) / len(r)
                                                        for p, r in zip(ps, rs, strict=True)) / len(ps))


# --- notebook 03 ------------------------------------------------------------------------------


def _lora_grads(x, A, B, alpha, grad_y):
    s = alpha / A.shape[0]
    x2, g2 = x.reshape(-1, x.shape[-1]), grad_y.reshape(-1, grad_y.shape[-1])
    return s * (g2 @ B).T @ x2, s * g2.T @ (x2 @ A.T)


def test_lora_grads():
    assert "✓" in nb03.check_lora_grads(_lora_grads)
    with pytest.raises(common.CheckFailed, match="not written yet"):
        nb03.check_lora_grads(_unwritten)
    with pytest.raises(common.CheckFailed, match="multiply by the scaling alpha / r"):
        nb03.check_lora_grads(lambda x, A, B, alpha, g: tuple(t * A.shape[0] / alpha for t in _lora_grads(x, A, B, alpha, g)))
    with pytest.raises(common.CheckFailed, match=r"other order, \(grad_B, grad_A\)"):
        nb03.check_lora_grads(lambda x, A, B, alpha, g: _lora_grads(x, A, B, alpha, g)[::-1])
    with pytest.raises(common.CheckFailed, match="sum over all positions"):
        nb03.check_lora_grads(lambda x, A, B, alpha, g: tuple(t / 10 for t in _lora_grads(x, A, B, alpha, g)))
    with pytest.raises(common.CheckFailed, match="chain rule"):
        nb03.check_lora_grads(lambda x, A, B, alpha, g: (_lora_grads(x, A, B, alpha, g)[0], B))
    with pytest.raises(common.CheckFailed, match="Check the shapes"):
        nb03.check_lora_grads(lambda x, A, B, alpha, g: (x @ B, B))
    with pytest.raises(common.CheckFailed, match="return a pair"):
        nb03.check_lora_grads(lambda x, A, B, alpha, g: _lora_grads(x, A, B, alpha, g)[0])


def test_lora_cases_tell_the_scalings_apart():
    for _, _, n_out, rank, alpha in nb03._LORA_CASES:
        scalings = [1.0, alpha, alpha / rank, alpha / rank**0.5, alpha / n_out, rank / alpha]
        assert len({round(s, 6) for s in scalings}) == len(scalings)


def test_merge():
    assert "✓" in nb03.check_merge(lambda W, A, B, alpha: W + alpha / A.shape[0] * B @ A)
    with pytest.raises(common.CheckFailed, match="not written yet"):
        nb03.check_merge(_unwritten)
    with pytest.raises(common.CheckFailed, match="not alpha"):
        nb03.check_merge(lambda W, A, B, alpha: W + alpha * B @ A)
    with pytest.raises(common.CheckFailed, match="its transpose"):
        nb03.check_merge(lambda W, A, B, alpha: W.T + alpha / A.shape[0] * A.T @ B.T)
    with pytest.raises(common.CheckFailed, match=r"B @ A: \(out, r\)"):
        nb03.check_merge(lambda W, A, B, alpha: W + alpha / A.shape[0] * A @ B)


def test_rank_for_budget():
    def rank_for_budget(shapes, budget):
        return budget // sum(n_in + n_out for n_out, n_in in shapes)

    assert "✓" in nb03.check_rank_for_budget(rank_for_budget)
    assert rank_for_budget([(384, 384)] * 4, 100_000) == 32  # 4 x 768 = 3072 per rank, by hand
    with pytest.raises(common.CheckFailed, match="not written yet"):
        nb03.check_rank_for_budget(_unwritten)
    with pytest.raises(common.CheckFailed, match="<=, not <"):
        nb03.check_rank_for_budget(lambda shapes, budget: (budget - 1) // sum(i + o for o, i in shapes))
    with pytest.raises(common.CheckFailed, match="count every layer"):
        nb03.check_rank_for_budget(lambda shapes, budget: budget // (shapes[0][0] + shapes[0][1]))
    with pytest.raises(common.CheckFailed, match="whole number"):
        nb03.check_rank_for_budget(lambda shapes, budget: budget / sum(i + o for o, i in shapes))
    with pytest.raises(common.CheckFailed, match="over the budget"):
        nb03.check_rank_for_budget(lambda shapes, budget: round(budget / sum(i + o for o, i in shapes)))


# --- notebook 06 ------------------------------------------------------------------------------


def _class_f1(y_true, y_pred, c):
    tp = sum(t == c and p == c for t, p in zip(y_true, y_pred, strict=True))
    fp = sum(t != c and p == c for t, p in zip(y_true, y_pred, strict=True))
    fn = sum(t == c and p != c for t, p in zip(y_true, y_pred, strict=True))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def _macro_f1(y_true, y_pred, n_classes):
    return sum(_class_f1(y_true, y_pred, c) for c in range(n_classes)) / n_classes


def test_macro_f1():
    assert "✓" in nb06.check_macro_f1(_macro_f1)
    assert _macro_f1([0, 0, 1, 1], [0, 0, 0, 0], 2) == pytest.approx((2 / 3 + 0) / 2)  # by hand: class 0 has P 1/2, R 1
    with pytest.raises(common.CheckFailed, match="not written yet"):
        nb06.check_macro_f1(_unwritten)
    with pytest.raises(common.CheckFailed, match="that is accuracy"):
        nb06.check_macro_f1(lambda t, p, n: sum(a == b for a, b in zip(t, p, strict=True)) / len(t))

    def predicted_only(y_true, y_pred, n_classes):
        seen = sorted(set(y_pred))
        return sum(_class_f1(y_true, y_pred, c) for c in seen) / len(seen)

    with pytest.raises(common.CheckFailed, match="never predicted"):
        nb06.check_macro_f1(predicted_only)

    def weighted(y_true, y_pred, n_classes):
        from sklearn.metrics import f1_score

        return f1_score(y_true, y_pred, average="weighted")

    with pytest.raises(common.CheckFailed, match="same weight"):
        nb06.check_macro_f1(weighted)


def test_majority_accuracy():
    from collections import Counter

    def majority(train, test):
        label = Counter(train).most_common(1)[0][0]
        return sum(y == label for y in test) / len(test)

    assert "✓" in nb06.check_majority_accuracy(majority)
    assert majority([0, 1, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2, 2, 2, 2]) == pytest.approx(2 / 9)  # by hand
    with pytest.raises(common.CheckFailed, match="not written yet"):
        nb06.check_majority_accuracy(_unwritten)
    with pytest.raises(common.CheckFailed, match="TEST labels"):
        nb06.check_majority_accuracy(lambda train, test: majority(test, test))
    with pytest.raises(common.CheckFailed, match="score it on the test labels"):
        nb06.check_majority_accuracy(lambda train, test: majority(train, train))
    with pytest.raises(common.CheckFailed, match="not 1 / number of classes"):
        nb06.check_majority_accuracy(lambda train, test: 1 / len(set(train) | set(test)))


def test_label_ids():
    def label_ids(labels):
        names = sorted(set(labels))
        return names, [names.index(x) for x in labels]

    assert "✓" in nb06.check_label_ids(label_ids)
    with pytest.raises(common.CheckFailed, match="not written yet"):
        nb06.check_label_ids(_unwritten)
    with pytest.raises(common.CheckFailed, match="do not depend on which row comes first"):
        nb06.check_label_ids(lambda ls: (list(dict.fromkeys(ls)), [list(dict.fromkeys(ls)).index(x) for x in ls]))
    with pytest.raises(common.CheckFailed, match="2 comes before 10"):
        nb06.check_label_ids(lambda ls: (sorted({str(x) for x in ls}), [sorted({str(x) for x in ls}).index(str(x))
                                                                          for x in ls]))
    with pytest.raises(common.CheckFailed, match="position in names"):
        nb06.check_label_ids(lambda ls: (sorted(set(ls)), list(range(len(ls)))))


def test_label_ids_reference_is_load_labelled(tmp_path):
    from sklearn.preprocessing import LabelEncoder

    from utils import classification

    labels = [10, 2, 1] * 4
    path = tmp_path / "tickets.csv"
    path.write_text("text,label\n" + "".join(f"text {i},{y}\n" for i, y in enumerate(labels)))
    loaded = classification.load_labelled(path, test_size=0.5)
    assert classification.label_names(loaded) == [str(c) for c in LabelEncoder().fit(labels).classes_] == ["1", "2", "10"]


@pytest.mark.parametrize("check,right", [(nb01.check_why_outlier_block, "a"), (nb03.check_why_thin_product, "b"),
                                         (nb04.check_why_input_ids_stay, "b"), (nb05.check_why_best_reference, "b")])
def test_why_questions_take_one_letter_and_hint_on_a_wrong_one(check, right):
    assert check(right).startswith(f"✓ ({right})")
    assert check(f" ({right.upper()}) ").startswith("✓")  # "(B)" and " b " are the same answer
    with pytest.raises(common.CheckFailed, match="not answered yet"):
        check(None)
    with pytest.raises(common.CheckFailed, match="is not one of the options"):
        check("z")
    wrong = next(k for k in "abc" if k != right)
    with pytest.raises(common.CheckFailed, match=rf"not \({wrong}\).*Hint:"):
        check(wrong)


def test_a_choice_s_key_must_name_one_of_its_options(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "ANSWERS_DIR", tmp_path)
    (tmp_path / "nb99.json").write_text('{"q": {"correct": "c", "explanation": "because"}}')
    choice = common.Choice("nb99", "q", "q?", {"a": "x", "b": "y"}, "look")
    with pytest.raises(ValueError, match="is not an option"):
        choice.check("a")
    assert "(a) x" in choice._repr_markdown_()


@pytest.mark.parametrize("check,right", [(nb01.check_why_outlier_block, "a"), (nb03.check_why_thin_product, "b")])
def test_without_the_answer_key_a_choice_is_only_recorded(check, right, tmp_path, monkeypatch):
    """A classroom release has no answers/: the student's check accepts any option without saying which is right,
    and the teacher's graded check refuses to guess."""
    monkeypatch.setattr(common, "ANSWERS_DIR", tmp_path)
    wrong = next(k for k in "abc" if k != right)
    assert check(right) == check(wrong).replace(f"({wrong})", f"({right})")
    assert "your teacher's grader" in check(wrong)
    with pytest.raises(common.CheckFailed, match="not answered yet"):
        check(None)
    with pytest.raises(RuntimeError, match="no answer key"):
        check(right, graded=True)
