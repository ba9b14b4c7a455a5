"""Notebook 05's fair comparison: few-shot prompts, a generation budget from training answers, prompts that never
depend on where the answer is, three ways scored over seeds, the seed rule, forgetting on real passages with its
noise scale, the merge and the deployed models checked by their answers, and SQuAD's offline stand-in."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from utils.errors import InputError
from utils.evaluation import qa as qa_eval
from utils.evaluation.seeds import mean_std, seed_verdict
from utils.models import bnb_4bit_config, load_model, tiny_phi
from utils.models.adapters import add_lora, load_adapter
from utils.paths import REPO_ROOT
from utils.qa import collate, training
from utils.qa import data as qa_data
from utils.qa.config import QAConfig, qa_set_file

DATA = [REPO_ROOT / "data/qa/train.json", REPO_ROOT / "data/qa/validation.json"]
TRAIN = qa_data.load_qa_split(DATA[0])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tiny_phi.ensure_tiny_phi(tmp_path_factory.mktemp("tiny") / "phi", qa_data.qa_texts(*DATA), seed=0, vocab_size=512,
                                      hidden_size=64, intermediate_size=256)
    return folder, AutoTokenizer.from_pretrained(folder)


def tuned(folder, seed: int = 0):
    torch.manual_seed(seed)
    model = load_model(str(folder), AutoModelForCausalLM, bnb_4bit_config())
    model = add_lora(model, 4, 8, ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"], task_type="CAUSAL_LM")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model.eval()


# ------------------------------------------------------------------------------------------ few-shot prompts
def test_answer_sentence_is_the_sentence_holding_the_span():
    context = "Ann came home in May. She built a boat. It was red."
    assert qa_data.answer_sentence(context, "a boat") == "She built a boat."
    assert qa_data.answer_sentence(context, "May. She", context.index("May")) == "Ann came home in May. She built a boat."
    assert qa_data.answer_sentence(context, "nowhere") == context  # not found: the whole context


def test_few_shot_examples_are_seeded_from_distinct_contexts_and_cut_to_their_sentence():
    shots = qa_data.few_shot_examples(TRAIN, 3, seed=0)
    assert shots == qa_data.few_shot_examples(TRAIN, 3, seed=0) != qa_data.few_shot_examples(TRAIN, 3, seed=1)
    by_question = {r["question"]: r for r in TRAIN}
    contexts = {by_question[s.question]["context"] for s in shots}
    assert len(contexts) == 3  # three different passages
    for shot in shots:
        row = by_question[shot.question]
        assert shot.answer in shot.context and shot.context in row["context"] and len(shot.context) < len(row["context"])
    with pytest.raises(InputError, match=r"only 32 contexts"):
        qa_data.few_shot_examples(TRAIN, 33)
    with pytest.raises(InputError, match=r"k=-1"):
        qa_data.few_shot_examples(TRAIN, -1)
    assert qa_data.few_shot_examples(TRAIN, 0) == []


def test_instruct_few_shot_prompt_puts_solved_examples_before_the_question():
    shots = [qa_data.Shot("Who came?", "Ann came.", "Ann"), qa_data.Shot("When?", "It was May.", "May")]
    prompt = qa_data.build_prompt("Who left?", "Bo left.", qa_data.INSTRUCT, shots)
    instruction = f"Instruct: {qa_data.INSTRUCTION}\n"
    assert prompt == (f"{instruction}Context: Ann came.\nQuestion: Who came?\nOutput: Ann\n"
                      f"{instruction}Context: It was May.\nQuestion: When?\nOutput: May\n"
                      f"{instruction}Context: Bo left.\nQuestion: Who left?\nOutput:")
    assert prompt.endswith(qa_data.build_prompt("Who left?", "Bo left."))  # zero-shot = the last block


def test_worked_examples_leave_the_questions_context_the_same_room(base):
    _, tokenizer = base
    row = TRAIN[0]
    long_context = "filler words here. " * 60 + row["context"]
    shots = qa_data.few_shot_examples(TRAIN, 3, seed=0)
    zero, cut0 = qa_data.encode_prompt(tokenizer, row["question"], long_context, 96)
    few, cut3 = qa_data.encode_prompt(tokenizer, row["question"], long_context, 96, shots=shots)
    assert cut0 and cut3 and len(zero) == 96
    head_shots = len(tokenizer(qa_data.prompt_parts(row["question"], long_context, shots=shots)[0],
                               add_special_tokens=False)["input_ids"])
    head_zero = len(tokenizer(qa_data.prompt_parts(row["question"], long_context)[0], add_special_tokens=False)["input_ids"])
    assert len(few) == 96 + head_shots - head_zero  # the examples come on top; the context keeps the same tokens
    assert few[-(96 - head_zero):] == zero[head_zero:]


# ------------------------------------------------------------------------------------------ generation
def test_generation_never_builds_a_prompt_from_where_the_answer_is(base):
    """A context too long for max_length keeps its beginning, whatever answer_start says (the reference is not
    used to choose what the model reads), and the cut is counted in a warning."""
    folder, tokenizer = base
    model = tuned(folder)
    row = dict(TRAIN[0])
    filler = "The weather was mild. " * 30
    row["context"] = filler + row["context"]
    row["answers"] = {"text": row["answers"]["text"], "answer_start": [len(filler) + row["answers"]["answer_start"][0]]}
    blind = dict(row, answers=None)
    settings_ = {"max_new_tokens": 4, "max_length": 64, "progress": False}
    with pytest.warns(UserWarning, match=r"1 of 1 contexts were longer than max_length=64"):
        seen = qa_eval.generate_answers(model, tokenizer, [row], **settings_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert seen == qa_eval.generate_answers(model, tokenizer, [blind], **settings_)


def test_answer_length_budget_by_hand(base):
    _, tokenizer = base
    rows = [{"answers": {"text": [t]}} for t in ("a", "a b", "a b c", "a b c d")]
    lengths = sorted(len(tokenizer(" " + t, add_special_tokens=False)["input_ids"]) for t in ("a", "a b", "a b c", "a b c d"))
    budget = qa_eval.answer_length_budget(rows, tokenizer, qa_data.INSTRUCT, share=0.5)
    assert budget == {"max_new_tokens": lengths[1] + 1, "share": 0.5, "covered": 0.5, "longest": lengths[-1]}
    assert qa_eval.answer_length_budget(rows, tokenizer, qa_data.INSTRUCT, share=1.0)["max_new_tokens"] == lengths[-1] + 1
    with pytest.raises(ValueError, match="share"):
        qa_eval.answer_length_budget(rows, tokenizer, qa_data.INSTRUCT, share=0)


def test_three_ways_score_tuned_few_shot_and_zero_shot_once(base):
    folder, tokenizer = base
    model = tuned(folder)
    rows = qa_data.load_qa_split(DATA[1])[:3]
    generate = {"max_new_tokens": 3, "max_length": 128, "fmt": qa_data.INSTRUCT}
    first = qa_eval.score_three_ways(model, tokenizer, rows, TRAIN, 0, 2, **generate)
    again = qa_eval.score_three_ways(model, tokenizer, rows, TRAIN, 1, 2, zero_shot=False, **generate)
    assert [r["way"] for r in first] == ["tuned", "few-shot base", "zero-shot base"]
    assert [r["way"] for r in again] == ["tuned", "few-shot base"]
    assert first[0]["answers"] == again[0]["answers"]  # the same adapter: the seed only draws other examples
    with model.disable_adapter():
        plain = qa_eval.generate_answers(model, tokenizer, rows, progress=False, **generate)
    assert first[2]["answers"] == plain and first[2]["seed"] is None
    summary = qa_eval.summarize_ways(first + again)
    assert summary["zero-shot base"] == {"mean": first[2]["f1"], "std": 0.0, "seeds": 1}
    assert summary["tuned"]["seeds"] == 2 and summary["tuned"]["std"] == 0.0
    assert all(r["seconds"] > 0 for r in first + again)  # section 7 times the 4-bit + adapter from these


# ------------------------------------------------------------------------------------------ merged and exported models
def test_compare_answers_counts_the_same_normalised_answers_and_scores_each_model():
    references = [["Oss"], ["1342"], ["a miller"]]
    table = qa_eval.compare_answers({"4-bit": ["the Oss", "1342", "baker"], "merged": ["Oss!", "1343", "miller"]},
                                    references)
    assert table["4-bit"] == {"exact_match": pytest.approx(200 / 3), "f1": pytest.approx(200 / 3), "n": 3,
                              "same answers": 3}
    assert table["merged"]["same answers"] == 1 and table["merged"]["exact_match"] == pytest.approx(200 / 3)
    short = qa_eval.compare_answers({"4-bit": ["Oss", "1342", "miller"], "file": ["Oss"]}, references)
    assert short["file"]["n"] == 1 and short["file"]["same answers"] == 1  # fewer questions: the first ones
    with pytest.raises(ValueError, match="only 1"):
        qa_eval.compare_answers({"4-bit": ["Oss"], "file": ["Oss", "1342"]}, references)
    with pytest.raises(ValueError, match="no answers"):
        qa_eval.compare_answers({}, references)
    # with the seed spread, each F1 against the reference's by the seed rule (beyond twice the spread counts)
    judged = qa_eval.compare_answers({"4-bit": ["Oss", "1342", "miller"], "merged": ["Oss", "1343", "baker"]},
                                     references, spread=10.0)  # F1 100 vs 33.3: -66.7, beyond 2 * 10
    assert judged["merged"]["f1 vs reference"] == "lower" and judged["4-bit"]["f1 vs reference"] == "within seed noise"
    assert qa_eval.compare_answers({"4-bit": ["Oss"], "merged": ["the Oss"]}, references[:1],
                                   spread=math.nan)["merged"]["f1 vs reference"] == "not comparable"
    assert "f1 vs reference" not in table["merged"]


def test_merge_check_is_exact_up_to_rounding_and_reports_top1_against_the_4bit_model(base, tmp_path):
    """Merging in float32 moves the logits far less than its rounding bound; the report's top-1 agreements are
    shares of the batch's positions. A wrongly scaled merge (the adapter added twice) breaks the bound."""
    folder, tokenizer = base
    model = tuned(folder)
    model.save_pretrained(tmp_path / "adapter")
    features, _ = qa_data.encode_rows(qa_data.load_qa_split(DATA[1])[:2], tokenizer, 128, fmt=qa_data.INSTRUCT)
    batch = collate.sample_batch(features, 2)
    merged, report = qa_eval.merge_check(model, folder, tmp_path / "adapter", batch, torch.float32)
    assert report["positions"] == batch["input_ids"].numel()
    assert report["max |merged - unmerged|"] <= report["rounding floor"] < 1e-3 * report["max |logit|"]
    assert report["top-1 agreement merged vs unmerged"] == 1.0
    assert 0 <= report["top-1 agreement merged vs 4-bit + adapter"] <= 1
    twice = load_adapter(folder, tmp_path / "adapter", dtype=torch.float32)
    for module in twice.modules():
        if hasattr(module, "lora_A"):  # a LoRA layer: its scaling is {adapter: alpha / r}
            module.scaling = {k: 2 * v for k, v in module.scaling.items()}
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        wrong = (twice.merge_and_unload()(**inputs).logits - merged(**inputs).logits).abs().max().item()
    assert wrong > 10 * report["rounding floor"], wrong
    assert qa_eval.timed_generation(merged, tokenizer, qa_data.load_qa_split(DATA[1])[:2], max_new_tokens=2,
                                    max_length=128, fmt=qa_data.INSTRUCT).keys() == {"answers", "seconds",
                                                                                     "questions_per_s"}  # CPU: no peak


# ------------------------------------------------------------------------------------------ the seed rule
def test_seed_verdict_by_hand():
    assert mean_std([70.0, 80.0, 90.0]) == (80.0, 10.0)
    assert math.isnan(mean_std([5.0])[1])
    assert seed_verdict(80.0, 10.0, 50.0, 5.0) == "higher"  # 30 > 2 x 10
    assert seed_verdict(50.0, 5.0, 80.0, 10.0) == "lower"
    assert seed_verdict(60.0, 10.0, 50.0, 0.0) == "within seed noise"  # 10 <= 20
    assert seed_verdict(60.0, 0.0, 50.0, 0.0) == "higher"  # two deterministic scores
    assert seed_verdict(60.0, math.nan, 50.0, 0.0) == "not comparable"
    with pytest.raises(ValueError):
        seed_verdict(1.0, -1.0, 0.0, 0.0)


@given(st.lists(st.floats(0, 100), min_size=2, max_size=6), st.lists(st.floats(0, 100), min_size=2, max_size=6))
@settings(max_examples=200, deadline=None)
def test_seed_verdict_is_antisymmetric(a, b):
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    flipped = {"higher": "lower", "lower": "higher"}
    forward, backward = seed_verdict(ma, sa, mb, sb), seed_verdict(mb, sb, ma, sa)
    assert backward == flipped.get(forward, forward)


# ------------------------------------------------------------------------------------------ forgetting
def test_perplexity_ratio_by_hand_and_its_interval():
    same = qa_eval.perplexity_ratio([2.0, 4.0], [2.0, 4.0], [10, 20])
    assert same == {"ratio": 1.0, "low": 1.0, "high": 1.0}
    shifted = qa_eval.perplexity_ratio([3.0, 6.0], [2.0, 4.0], [10, 20])  # a: 0.1 nat more per token everywhere
    assert shifted["ratio"] == pytest.approx(math.exp(0.1)) and shifted["low"] == pytest.approx(math.exp(0.1))
    mixed = qa_eval.perplexity_ratio([3.0, 2.0, 5.0, 4.0], [2.0, 3.0, 4.0, 5.0], [10, 10, 10, 10], seed=1)
    assert mixed["low"] < 1 == mixed["ratio"] < mixed["high"]  # an even trade: the interval holds both signs
    with pytest.raises(ValueError, match=">= 2 passages"):
        qa_eval.perplexity_ratio([1.0], [1.0], [3])


def test_general_text_perplexity_sets_the_adapter_against_nf4(base):
    """A fresh adapter (B = 0) changes nothing, exactly; the unquantized base gives the NF4 yardstick on the same
    passages; the passages' total is the sum of each one's."""
    folder, tokenizer = base
    passages = [r["context"] for r in TRAIN[:24:8]]
    model = tuned(folder)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.zero_()
    unquantized = load_model(str(folder), AutoModelForCausalLM, dtype=torch.float32)
    report = qa_eval.general_text_perplexity(model, tokenizer, passages, 64, unquantized)
    assert report["tuning"] == {"ratio": 1.0, "low": 1.0, "high": 1.0}
    nll, tokens = qa_eval.passage_nll(unquantized, tokenizer, passages, 64)
    assert report["perplexity"]["unquantized"] == pytest.approx(math.exp(sum(nll) / sum(tokens)))
    assert report["nf4"]["ratio"] == pytest.approx(report["perplexity"]["base"] / report["perplexity"]["unquantized"])
    assert report["nf4"]["ratio"] != 1 and report["passages"] == 3 and report["tokens"] == sum(tokens)
    assert "nf4" not in qa_eval.general_text_perplexity(tuned(folder), tokenizer, passages, 64)


def test_passages_scored_in_padded_batches_give_the_sums_of_one_at_a_time(base):
    folder, tokenizer = base
    passages = [r["context"] for r in TRAIN[:24:8]] + [r["question"] for r in TRAIN[:2]]  # of different lengths: padded
    model = tuned(folder)
    one, tokens = qa_eval.passage_nll(model, tokenizer, passages, 64, batch_size=1)
    batched, same_tokens = qa_eval.passage_nll(model, tokenizer, passages, 64, batch_size=3)
    assert len(set(tokens)) > 1 and same_tokens == tokens
    assert batched == pytest.approx(one, rel=1e-4)
    with pytest.raises(ValueError, match="batch_size"):
        qa_eval.passage_nll(model, tokenizer, passages, 64, batch_size=0)


# ------------------------------------------------------------------------------------------ data sources
def test_named_offline_sets_resolve_to_their_files():
    assert qa_set_file("disfl-qa", "validation") == str(REPO_ROOT / "data/disfl_qa/validation.json")
    assert qa_set_file("rajpurkar/squad", "train") == "rajpurkar/squad"
    assert QAConfig.resolve("smoke", dataset="disfl-qa").dataset == str(REPO_ROOT / "data/disfl_qa/train.json")
    assert QAConfig.resolve("smoke").dataset == qa_set_file("course-qa", "train")
    with pytest.raises(InputError, match="'train' and 'validation'"):
        qa_set_file("course-qa", "test")


def test_squad_without_the_hub_falls_back_to_the_real_offline_set_and_says_so(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.warns(UserWarning, match=r"rajpurkar/squad: could not be loaded from the Hugging Face Hub.*'disfl-qa'"):
        rows, used = qa_data.load_or_stand_in("rajpurkar/squad", "validation", limit=5)
    assert used == qa_set_file("disfl-qa", "validation") and len(rows) == 5
    with pytest.raises(qa_data.HubUnreachable, match="could not be loaded from the Hugging Face Hub"):
        qa_data.load_or_stand_in("someone/no-stand-in", "train")
    config = QAConfig.resolve("full", train_size=8)
    with pytest.warns(UserWarning, match="disfl-qa"):
        rows, recorded = training.training_rows(config)
    assert recorded.dataset == qa_set_file("disfl-qa", "train") and len(rows) == 8  # what training_params.json keeps
    assert recorded.replace(dataset=config.dataset) == config  # nothing else changed
    rows, same = qa_data.load_or_stand_in("course-qa", "validation")
    assert same == qa_set_file("course-qa", "validation") and len(rows) == len(qa_data.load_qa_split(DATA[1]))


@given(st.integers(0, 40), st.integers(0, 10))
@settings(max_examples=50, deadline=None)
def test_sample_rows_is_a_seeded_ordered_subset(limit, seed):
    rows = [{"id": str(i)} for i in range(20)]
    picked = qa_data.sample_rows(rows, limit, seed)
    assert len(picked) == min(limit, 20) and picked == qa_data.sample_rows(rows, limit, seed)
    ids = [int(r["id"]) for r in picked]
    assert ids == sorted(set(ids))


def test_gap_words_say_the_verdict_with_its_gap():
    from utils.evaluation.seeds import gap_words

    assert gap_words("higher", 12.34, "raises F1", "lowers F1", "changes F1") == "raises F1 by 12.3 points"
    assert gap_words("lower", -4.0, "raises F1", "lowers F1", "changes F1") == "lowers F1 by 4.0 points"
    assert gap_words("within seed noise", -0.3, "raises F1", "lowers F1", "changes F1") == \
        "changes F1 by -0.3 points, within the seed noise"


def test_the_real_data_runs_readme_states_its_records_numbers():
    """results/2026-12-06_qa_real_smollm2/README.md: its table is the record's summary (mean ± std per way), and
    its per-seed rows are the record's scores, to the decimal shown."""
    import re

    from utils.paths import committed_result

    run = committed_result("2026-12-06_qa_real_smollm2")
    text = (REPO_ROOT / "results/2026-12-06_qa_real_smollm2/README.md").read_text()
    for way in qa_eval.WAYS:
        row = re.search(rf"^\| {way}[^|]* \| ([^|]+) \| ([^|]+) \|$", text, flags=re.M)
        assert row, f"no row for {way}"
        for cell, metric in zip(row.groups(), ("exact_match", "f1"), strict=True):
            summary = run["summary"][metric][way]
            expected = f"{summary['mean']:.1f}" + (f" ± {summary['std']:.1f}" if way != "zero-shot base" else "")
            assert cell.strip() == expected, (way, metric, cell)
    for seed, result in run["seeds"].items():
        for score in result["scores"]:
            assert f"| {seed} | {score['way']} | {score['exact_match']:.1f} | {score['f1']:.1f} |" in text
        assert f"{result['losses'][0]:.2f} → {result['losses'][-1]:.2f} (seed {seed})" in text
    f1 = run["summary"]["f1"]
    gap = f1["tuned"]["mean"] - f1["few-shot base"]["mean"]
    assert f"{gap:.1f} points above the few-shot base" in text
    assert gap > 10 * max(f1["tuned"]["std"], f1["few-shot base"]["std"])  # "more than ten times the larger seed std"
    assert seed_verdict(f1["tuned"]["mean"], f1["tuned"]["std"], f1["few-shot base"]["mean"],
                        f1["few-shot base"]["std"]) == "higher"


def test_three_way_verdicts_apply_the_seed_rule_to_each_step():
    f1 = {"zero-shot base": {"mean": 0.0, "std": 0.0, "seeds": 1},
          "few-shot base": {"mean": 15.0, "std": 3.0, "seeds": 3}, "tuned": {"mean": 18.0, "std": 4.0, "seeds": 3}}
    assert qa_eval.three_way_verdicts(f1) == {"prompt": "higher", "tuning": "within seed noise"}  # 15 > 6; 3 <= 8
    f1["tuned"] = {"mean": 5.0, "std": 1.0, "seeds": 3}
    assert qa_eval.three_way_verdicts(f1)["tuning"] == "lower"  # 10 > 6
