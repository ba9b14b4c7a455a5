"""utils.qa.config: one owner of the QA settings, through the notebook (papermill), the command line and
training_params.json."""

from __future__ import annotations

import json

import pytest

from utils import notebooks
from utils.cli import finetune
from utils.paths import REPO_ROOT
from utils.qa import config as C
from utils.qa.config import ConfigError, QAConfig

NB04 = notebooks.NOTEBOOK_DIR / "04_phi2_qlora_training.ipynb"
NB05 = notebooks.NOTEBOOK_DIR / "05_phi2_qa_evaluation.ipynb"


def test_resolution_order_default_profile_preset_you():
    smoke = QAConfig.resolve("smoke")
    assert smoke.max_steps == C.PROFILE_DEFAULTS["smoke"]["max_steps"] and smoke.lora_rank == QAConfig().lora_rank
    mine = QAConfig.resolve("smoke", "assignment", lora_rank=8, max_steps=None)  # None: not set
    assert mine.lora_rank == 8 and mine.lora_alpha == C.ASSIGNMENT["lora_alpha"]
    assert mine.max_steps == C.ASSIGNMENT["max_steps"] and mine.model_id == smoke.model_id  # profile's model
    sources = QAConfig.sources("smoke", "assignment", lora_rank=8)
    assert (sources["lora_rank"], sources["lora_alpha"], sources["model_id"], sources["optimizer"]) == (
        "you", "preset", "profile", "default")
    assert QAConfig.resolve("full") == QAConfig()  # the field defaults are the full profile


@pytest.mark.parametrize("settings,message", [
    (dict(lora_rnak=8), r"unknown QA setting\(s\) \['lora_rnak'\]; the settings are: model_id"),
    (dict(lora_rank=0), "lora_rank must be a positive integer, got 0"),
    (dict(lora_rank="8"), r"lora_rank must be an integer, got '8' \(str\)"),
    (dict(lora_dropout=1.0), r"lora_dropout must be in \[0, 1\), got 1.0"),
    (dict(target_modules="q_proj"), r"must be a list of layer names, e.g. \['q_proj'\], not the string"),
    (dict(target_modules=[]), "target_modules is empty"),
    (dict(text_format="alpaca"), "text_format must be one of"),
    (dict(columns={"question": "q"}), r"missing \['answers', 'context'\]"),
    (dict(train_size=-1), "train_size must be a number of questions, or 0 for all"),
    (dict(answer_logits_only="yes"), "answer_logits_only must be True or False"),
])
def test_bad_settings_are_clear_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        QAConfig.resolve("full", **settings)


def test_replace_checks_names_and_values_like_resolve():
    config = QAConfig.resolve("smoke")
    assert config.replace(max_steps=3).max_steps == 3 and config.max_steps != 3  # a copy; frozen original
    with pytest.raises(ConfigError, match=r"unknown QA setting\(s\) \['steps'\]"):
        config.replace(steps=3)
    with pytest.raises(ConfigError, match="max_steps must be a positive integer"):
        config.replace(max_steps=0)


def test_bad_profile_or_preset():
    with pytest.raises(ConfigError, match="PRESET must be one of"):
        QAConfig.resolve("full", "asignment")
    with pytest.raises(ConfigError, match="profile must be one of"):
        QAConfig.resolve("gpu")


def test_a_notebook_sets_a_few_settings_as_constants_and_any_other_in_settings():
    """Notebook 04's parameters cell: the constants it shows (LORA_RANK), any other field by name in SETTINGS; both
    win over the preset and the profile, and a field the cell does not mention is the preset's or the profile's."""
    namespace = {"LORA_RANK": 8, "MAX_STEPS": None, "SETTINGS": {"batch_size": 2, "save_steps": 2}}
    config, sources = QAConfig.from_namespace("smoke", "assignment", namespace)
    assert (config.lora_rank, config.batch_size, config.save_steps) == (8, 2, 2)
    assert (sources["lora_rank"], sources["batch_size"], sources["max_steps"], sources["model_id"]) == (
        "you", "you", "preset", "profile")
    assert QAConfig.from_namespace("smoke", "course", {})[0] == QAConfig.resolve("smoke")  # nothing set: defaults
    assert QAConfig.from_namespace("smoke", "course", {"GRAD_ACCUM": 2})[0].grad_accum == 2  # a constant of any field


@pytest.mark.parametrize("namespace,message", [
    ({"SETTINGS": [("batch_size", 8)]}, r"^SETTINGS: SETTINGS must be a dict of QA settings by name, got \[\('batch_size', 8\)\] "
                                         r"\(list\)\. Fix: write it like \{\"batch_size\": 8"),
    ({"SETTINGS": {"bach_size": 8}}, r"^SETTINGS: SETTINGS names unknown QA setting\(s\) \['bach_size'\].*Fix: correct the "
                                     r"name \(bach_size -> batch_size\)"),
    ({"SETTINGS": {"BATCH_SIZE": 8}}, r"^SETTINGS: SETTINGS names settings in upper case: \['BATCH_SIZE'\]\. Fix: write each "
                                      r"as its field name in lower case, e\.g\. 'batch_size'"),
    ({"LORA_RANK": 8, "SETTINGS": {"lora_rank": 4}}, r"^SETTINGS: \['LORA_RANK'\] are set both as constants and in SETTINGS "
                                                     r"\(\{'lora_rank': \[8, 4\]\}\)\. Fix: set each once"),
    ({"SETTINGS": {"max_steps": 0}}, r"^MAX_STEPS \(--max-steps\): max_steps must be a positive integer, got 0\. Fix:"),
])
def test_bad_settings_in_a_notebook_are_clear_errors(namespace, message):
    with pytest.raises(ConfigError, match=message):
        QAConfig.from_namespace("smoke", "course", namespace)


def test_notebook_04_shows_a_few_settings_and_reaches_every_other_through_settings():
    params = notebooks.notebook_parameters(NB04)
    shown = {n for n in QAConfig.field_names() if n.upper() in params}
    assert {"PROFILE", "PRESET", "SETTINGS", "ADAPTER_DIR"} <= set(params)
    assert {"model_id", "dataset", "lora_rank", "learning_rate", "max_steps"} <= shown
    assert len(shown) <= len(QAConfig.field_names()) // 3, f"the parameters cell shows {sorted(shown)}: keep it short"


def test_training_params_round_trip_and_refuse_what_they_cannot_read(tmp_path):
    config = QAConfig.resolve("smoke", "assignment", lora_rank=8, target_modules=["q_proj", "fc2"])
    C.save_params(tmp_path, config, {"steps": 3})
    assert C.read_params(tmp_path) == (config, {"steps": 3})
    path = tmp_path / C.PARAMS_FILE
    payload = json.loads(path.read_text())
    payload["config"]["lora_rnak"] = payload["config"].pop("lora_rank")
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match=r"settings missing \['lora_rank'\], unknown \['lora_rnak'\]"):
        C.read_params(tmp_path)
    path.write_text('{"schema": 1, "config": {')  # cut off mid-write
    with pytest.raises(ConfigError, match="is not valid JSON"):
        C.read_params(tmp_path)
    path.write_text(json.dumps({"lora_rank": 8, "max_steps": 3}))  # the layout before the schema
    with pytest.raises(ConfigError, match="has schema None; this course reads schema 1"):
        C.read_params(tmp_path)
    with pytest.raises(FileNotFoundError, match="run notebook 04"):
        C.read_params(tmp_path / "nowhere")


def _guanaco_file(path):
    """The course's QA pairs written as OpenAssistant-guanaco records (what the assignment preset trains on)."""
    rows = json.loads((REPO_ROOT / "data/qa/train.json").read_text())["data"]
    with path.open("w") as f:
        for article in rows:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    text = f"### Human: {qa['question']}### Assistant: {qa['answers'][0]['text']}"
                    f.write(json.dumps({"text": text}) + "\n")
    return path


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A tiny random Phi (fast): these tests check how settings flow, not what a model learns."""
    from utils.models import tiny_phi
    from utils.qa.data import qa_texts

    return str(tiny_phi.ensure_tiny_phi(tmp_path_factory.mktemp("tiny") / "phi", qa_texts(REPO_ROOT / "data/qa/train.json"),
                                        vocab_size=512, hidden_size=64, intermediate_size=256))


PHI_TARGETS = list(C.ARCHITECTURES["phi"].lora_targets)


def test_papermill_preset_assignment_with_lora_rank_8_trains_rank_8(tmp_path, monkeypatch, tiny_base):
    """The bug this config fixes: the preset cell used to overwrite what papermill injected. The settings the
    parameters cell does not show go in SETTINGS; the adapter's folder is named after the model that trained."""
    from utils.qa.storage import default_adapter_dir

    monkeypatch.setenv("QLORA_OUTPUT_DIR", str(tmp_path))  # run_notebook points it at the run; restored after
    data = _guanaco_file(tmp_path / "guanaco.jsonl")
    notebooks.run_notebook(NB04, tmp_path, {"PRESET": "assignment", "LORA_RANK": 8, "DATASET": str(data),
                                            "MODEL_ID": tiny_base, "TARGET_MODULES": PHI_TARGETS,
                                            "TRAIN_SIZE": 16, "MAX_STEPS": 6, "LEARNING_RATE": 5e-3,
                                            "SETTINGS": {"max_length": 96, "batch_size": 4, "grad_accum": 1,
                                                         "logging_steps": 1},
                                            "F1_QUESTIONS": 4})
    folder = default_adapter_dir(tiny_base)
    assert folder.parent == tmp_path and folder.name == "phi-qa-adapter"  # tiny_base is a folder named phi
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and adapter["lora_alpha"] == C.ASSIGNMENT["lora_alpha"]  # yours, and the preset's
    config, run = C.read_params(folder)
    assert (config.lora_rank, config.text_format, config.max_steps, run["preset"]) == (8, "guanaco", 6, "assignment")
    assert (config.max_length, config.batch_size, config.grad_accum) == (96, 4, 1)  # from SETTINGS


def test_an_adapter_trained_by_the_command_line_is_evaluated_by_notebook_05(tmp_path, monkeypatch, tiny_base):
    """The other bug: notebook 05 could not read what the command line wrote (keys differed). Notebook 05 also
    trains a second seed with the settings the command line stored."""
    monkeypatch.setenv("QLORA_OUTPUT_DIR", str(tmp_path))
    adapter = tmp_path / "cli-adapter"
    finetune.main(["--output-dir", str(adapter), "--model-id", tiny_base, "--target-modules", *PHI_TARGETS,
                   "--max-length", "128", "--max-steps", "4"])
    executed = notebooks.run_notebook(NB05, tmp_path, {"ADAPTER": str(adapter), "EVAL_SIZE": 8, "SEEDS": 2,
                                                       "REAL_EVAL_SIZE": 4, "GENERAL_TEXT_PASSAGES": 4,
                                                       "TIMING_QUESTIONS": 2, "QUALITY_ASSERTS": False})
    results = json.loads((tmp_path / "05_qa_evaluation.json").read_text())
    assert results["adapter"] == str(adapter) and executed.is_file()
    assert sorted({(r["set"], r["way"], r["seed"]) for r in results["scores"]}) == sorted(
        [(s, "zero-shot base", None) for s in ("course-qa", "disfl-qa")]
        + [(s, w, n) for s in ("course-qa", "disfl-qa") for w in ("few-shot base", "tuned") for n in (0, 1)])
    second, _ = C.read_params(tmp_path / "cli-adapter-seed1")
    first, _ = C.read_params(adapter)
    assert second == first.replace(seed=1)  # the same settings, another seed


def test_all_linear_alone_is_a_valid_target_list_and_a_stored_config_stays_readable_after_its_data_moved(tmp_path):
    """["all-linear"] (peft's keyword; what --target-modules all-linear gives) is accepted. Paths are checked when a
    run is set up (resolve, train_qa), not when training_params.json is read back: an adapter stays usable after
    the data it was trained on moved. Bad settings and paths: tests/test_bad_input_settings.py."""
    assert QAConfig.resolve("full", target_modules=["all-linear"]).target_modules == ("all-linear",)
    data = tmp_path / "train.json"
    data.write_text((REPO_ROOT / "data/qa/train.json").read_text())
    config = QAConfig.resolve("smoke", dataset=str(data))
    C.save_params(tmp_path / "adapter", config, {})
    data.unlink()
    assert C.read_params(tmp_path / "adapter")[0] == config  # readable
    with pytest.raises(ConfigError, match="does not exist"):
        config.check_paths()  # but not trainable


def test_fp16_halves_the_rows_per_pass_unless_they_were_set():
    """A T4 (fp16) keeps the residual stream in float32: the course then runs half the rows per pass, accumulated
    twice (the same rows per optimizer step), unless you, the profile or a preset set batch_size or grad_accum."""
    bf16, fp16 = QAConfig.resolve("full", precision="bf16"), QAConfig.resolve("full", precision="fp16")
    assert (fp16.batch_size, fp16.grad_accum) == (bf16.batch_size // 2, 2 * bf16.grad_accum)
    assert fp16.batch_size * fp16.grad_accum == bf16.batch_size * bf16.grad_accum
    assert QAConfig.sources("full", precision="fp16")["batch_size"] == "fp16 (T4)"
    mine = QAConfig.resolve("full", precision="fp16", batch_size=20)  # a value you set wins, and the pair stays yours
    assert (mine.batch_size, mine.grad_accum) == (20, 1)
    assert (QAConfig.resolve("full", precision="fp16", grad_accum=3).batch_size) == bf16.batch_size
    assert QAConfig.resolve("full", "assignment", precision="fp16").batch_size == C.ASSIGNMENT["batch_size"]
    assert QAConfig.resolve("smoke", precision="fp16").batch_size == C.PROFILE_DEFAULTS["smoke"]["batch_size"]
    assert QAConfig.resolve("full", precision="fp32").batch_size == bf16.batch_size


def test_a_params_file_from_before_offload_checkpoints_reads_as_it_was_trained(tmp_path):
    """training_params.json written before ``offload_checkpoints`` existed (a speed-only setting added later): it
    reads with the setting off, as that adapter was trained; every other missing setting is still an error."""
    import json

    from utils.qa.config import ConfigError, read_params, save_params

    path = save_params(tmp_path, QAConfig(), {"steps": 1})
    payload = json.loads(path.read_text())
    del payload["config"]["offload_checkpoints"]
    path.write_text(json.dumps(payload))
    config, run = read_params(tmp_path)
    assert config.offload_checkpoints is False and run == {"steps": 1}
    del payload["config"]["lora_rank"]
    path.write_text(json.dumps(payload))
    with pytest.raises(ConfigError, match="lora_rank"):
        read_params(tmp_path)
