"""utils.qa.config: one owner of the QA settings, through the notebook (papermill), the command line and
training_params.json."""

from __future__ import annotations

import json

import pytest

from utils import notebooks
from utils.cli import finetune
from utils.qa import config as C
from utils.qa.config import ConfigError, QAConfig
from utils.report import REPO_ROOT

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


def test_bad_profile_or_preset_and_a_notebook_missing_a_constant():
    with pytest.raises(ConfigError, match="PRESET must be one of"):
        QAConfig.resolve("full", "asignment")
    with pytest.raises(ConfigError, match="profile must be one of"):
        QAConfig.resolve("gpu")
    namespace = {name.upper(): None for name in QAConfig.field_names()}
    del namespace["LORA_RANK"]
    with pytest.raises(ConfigError, match=r"must define \['LORA_RANK'\]"):
        QAConfig.from_namespace("smoke", "course", namespace)


def test_notebook_04_defines_every_setting_as_none_in_its_parameters_cell():
    params = notebooks.notebook_parameters(NB04)
    assert {n.upper() for n in QAConfig.field_names()} <= set(params)
    assert {"PROFILE", "PRESET"} <= set(params)


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

    return str(tiny_phi.ensure_tiny_phi(tmp_path_factory.mktemp("tiny") / "phi", [REPO_ROOT / "data/qa/train.json"],
                                        vocab_size=512, hidden_size=64, intermediate_size=256))


PHI_TARGETS = list(C.ARCHITECTURES["phi"].lora_targets)


def test_papermill_preset_assignment_with_lora_rank_8_trains_rank_8(tmp_path, monkeypatch, tiny_base):
    """The bug this config fixes: the preset cell used to overwrite what papermill injected."""
    monkeypatch.setenv("QLORA_OUTPUT_DIR", str(tmp_path))  # run_notebook points it at the run; restored after
    data = _guanaco_file(tmp_path / "guanaco.jsonl")
    notebooks.run_notebook(NB04, tmp_path, {"PRESET": "assignment", "LORA_RANK": 8, "DATASET": str(data),
                                            "MODEL_ID": tiny_base, "TARGET_MODULES": PHI_TARGETS,
                                            "TRAIN_SIZE": 16, "MAX_LENGTH": 96, "MAX_STEPS": 6, "BATCH_SIZE": 4,
                                            "GRAD_ACCUM": 1, "LEARNING_RATE": 5e-3, "LOGGING_STEPS": 1,
                                            "F1_QUESTIONS": 4})
    adapter = json.loads((tmp_path / "phi2-qa-adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and adapter["lora_alpha"] == C.ASSIGNMENT["lora_alpha"]  # yours, and the preset's
    config, run = C.read_params(tmp_path / "phi2-qa-adapter")
    assert (config.lora_rank, config.text_format, config.max_steps, run["preset"]) == (8, "guanaco", 6, "assignment")


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
