"""Bad input to the settings and training entry points (issue 16): each case raises our InputError, up front, with a
message that names the field, what was expected and the fix; never a traceback from inside peft, transformers or
torch. Cases: the LoRA arguments and target lists (utils.models.adapters), the memory estimator (utils.memory),
QAConfig's settings and paths (utils.qa.config), the training command's output folder and resume/overwrite
(utils.qa.training.train_qa, python -m utils.cli.finetune)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

from utils.classification import load_classifier
from utils.cli import finetune
from utils.errors import InputError
from utils.experiments.ablation import lora_parameters_per_rank
from utils.memory import estimate
from utils.models import adapters, load_model, resolve_model_path, tiny_phi
from utils.paths import REPO_ROOT
from utils.qa import collate, run_folder, training
from utils.qa.config import PARAMS_FILE, ConfigError, QAConfig, save_params
from utils.qa.data import qa_texts

DATA = REPO_ROOT / "data/qa/train.json"
PHI2 = tiny_phi.phi2_shaped_config()
PHI_TARGETS = ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_phi.ensure_tiny_phi(tmp_path_factory.mktemp("tiny") / "phi", qa_texts(DATA), vocab_size=512, hidden_size=64,
                                    intermediate_size=256)


@dataclass
class Env:
    """What a case may use: a scratch folder, the tiny Phi's folder and a settings object that trains on it."""

    tmp: Path
    tiny: Path

    def config(self, **settings: Any) -> QAConfig:
        values = dict(model_id=str(self.tiny), target_modules=PHI_TARGETS, dataset=str(DATA), train_size=8,
                      max_length=128, max_steps=2, batch_size=2)
        return QAConfig.resolve("smoke", **(values | settings))

    def model(self) -> Any:
        return AutoModelForCausalLM.from_pretrained(self.tiny)

    def earlier_run(self, *names: str) -> Path:
        """A folder holding (empty stand-ins for) what an earlier run wrote."""
        out = self.tmp / "run"
        for name in names:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text("{}")
        return out


@pytest.fixture
def env(tmp_path, tiny) -> Env:
    return Env(tmp_path, tiny)


def _not_writable(env: Env) -> Path:
    """A folder that cannot be created: a read-only folder for a normal user; root may write anywhere but in
    sysfs, which refuses new entries to everyone."""
    if os.geteuid() != 0:
        locked = env.tmp / "locked"
        locked.mkdir(mode=0o500)
        return locked / "adapter"
    return Path("/sys/qlora-course-test/adapter")


@dataclass
class Case:
    call: Callable[[Env], Any]
    match: str  # a regular expression over the message: the field (as the message's "where") and the fix


CASES: dict[str, Case] = {
    # ---- LoRA arguments (adapters.check_lora_args, through add_lora)
    "rank 0": Case(lambda e: adapters.check_lora_args(0, 16), r"^rank: LoRA rank must be a positive integer, got 0\. Fix: pass a whole number"),
    "rank negative": Case(lambda e: adapters.check_lora_args(-4, 16), r"^rank: .*got -4\. Fix: pass a whole number"),
    "rank float": Case(lambda e: adapters.check_lora_args(2.5, 16), r"^rank: .*got 2\.5\. Fix: pass a whole number"),
    "rank bool": Case(lambda e: adapters.check_lora_args(True, 16), r"^rank: .*got True\. Fix: pass a whole number"),
    "alpha 0": Case(lambda e: adapters.check_lora_args(8, 0), r"^alpha: LoRA alpha must be > 0.*got 0\. Fix: pass a positive number"),
    "alpha nan": Case(lambda e: adapters.check_lora_args(8, math.nan), r"^alpha: .*got nan\. Fix: pass a positive number"),
    "alpha string": Case(lambda e: adapters.check_lora_args(8, "16"), r"^alpha: .*got '16'\. Fix: pass a positive number"),
    "dropout 1": Case(lambda e: adapters.check_lora_args(8, 16, 1.0), r"^dropout: .*in \[0, 1\), got 1\.0\. Fix: pass a probability"),
    "dropout negative": Case(lambda e: adapters.check_lora_args(8, 16, -0.1), r"^dropout: .*got -0\.1\. Fix: pass a probability"),
    "add_lora rank 0": Case(lambda e: adapters.add_lora(e.model(), 0, 8, PHI_TARGETS), r"^rank: LoRA rank must be a positive integer"),
    # ---- target modules (adapters.add_lora / check_target_modules): checked before peft sees them
    "target a string": Case(lambda e: adapters.add_lora(e.model(), 4, 8, "q_proj"),
                            r"^target_modules: got the single string 'q_proj'.*Fix: pass a list of layer names: \['q_proj'\]"),
    "target a number": Case(lambda e: adapters.add_lora(e.model(), 4, 8, 5), r"^target_modules: must be a list of layer names, got 5 \(int\)\. Fix: pass e\.g\."),
    "targets empty": Case(lambda e: adapters.add_lora(e.model(), 4, 8, []), r"^target_modules: target_modules is empty.*Fix: name at least one linear layer"),
    "target matches nothing": Case(lambda e: adapters.add_lora(e.model(), 4, 8, ["q_proj", "o_proj"]),
                                   r"^target_modules: target module\(s\) \['o_proj'\] match no linear layer of PhiForCausalLM\. "
                                   r"Linear layers in this model: \['dense', 'fc1', 'fc2', 'k_proj', 'lm_head', 'q_proj', 'v_proj'\]\. "
                                   r"Fix: choose from those.*architecture table gives \['q_proj', 'k_proj', 'v_proj', 'dense', 'fc1', 'fc2'\]"),
    "targets repeated": Case(lambda e: adapters.add_lora(e.model(), 4, 8, ["q_proj", "q_proj"]), r"^target_modules: \['q_proj'\] appear more than once.*Fix: name each layer once"),
    "target not a string": Case(lambda e: adapters.add_lora(e.model(), 4, 8, ["q_proj", 3]), r"^target_modules: entries \[3\] are not layer names.*Fix: write each layer's name as a string"),
    "all-linear with names": Case(lambda e: adapters.check_target_modules(e.model(), ["all-linear", "q_proj"]),
                                  r"^target_modules: 'all-linear' is peft's keyword.*Fix: pass 'all-linear' alone"),
    # ---- the memory estimator (utils.memory.estimate)
    "estimate targets a string": Case(lambda e: estimate(PHI2, tokens=100, target_modules="q_proj"),
                                      r"^TARGET_MODULES \(--target-modules\): target_modules must be a list of layer names, e\.g\. \['q_proj'\], not the string 'q_proj'.*Fix: write it as a list, \['q_proj'\]"),
    "estimate blocksize 0": Case(lambda e: estimate(PHI2, tokens=100, blocksize=0), r"^estimate: blocksize: blocksize must be one of bitsandbytes' 4-bit block sizes \(32, 64,.*got 0\. Fix: pass 64"),
    "estimate blocksize negative": Case(lambda e: estimate(PHI2, tokens=100, blocksize=-64), r"^estimate: blocksize: .*got -64\. Fix: pass 64"),
    "estimate blocksize not a power of 2": Case(lambda e: estimate(PHI2, tokens=100, blocksize=48), r"^estimate: blocksize: .*got 48\. Fix: pass 64"),
    "estimate tokens 0": Case(lambda e: estimate(PHI2, tokens=0), r"^estimate: tokens: tokens must be a positive integer .*got 0\. Fix: pass e\.g\. tokens=4096"),
    "estimate tokens float": Case(lambda e: estimate(PHI2, tokens=10.5), r"^estimate: tokens: .*got 10\.5\. Fix: pass e\.g\. tokens=4096"),
    "estimate sequences 0": Case(lambda e: estimate(PHI2, tokens=100, sequences=0), r"^estimate: sequences: sequences must be a positive integer.*Fix: pass e\.g\. sequences=1"),
    "estimate sequences > tokens": Case(lambda e: estimate(PHI2, tokens=4, sequences=8), r"^estimate: sequences: sequences=8 rows cannot hold only tokens=4 tokens.*Fix: pass tokens as"),
    "estimate logit_tokens > tokens": Case(lambda e: estimate(PHI2, tokens=100, logit_tokens=101), r"^estimate: logit_tokens: .*no larger than tokens=100.*got 101\. Fix: pass the graded positions"),
    "estimate logit_tokens 0": Case(lambda e: estimate(PHI2, tokens=100, logit_tokens=0), r"^estimate: logit_tokens: .*got 0\. Fix: pass the graded positions"),
    "estimate optimizer unknown to transformers": Case(lambda e: estimate(PHI2, tokens=100, optimizer="adam"),
                                                       r"^OPTIMIZER \(--optimizer\): unknown optimizer 'adam'.*Fix: use 'paged_adamw_8bit'"),
    "estimate optimizer of unknown state size": Case(lambda e: estimate(PHI2, tokens=100, optimizer="adafactor"),
                                                     r"^estimate: optimizer: unknown optimizer 'adafactor': its state size .*known: \['adamw_8bit'.*Fix: pass one of those"),
    "estimate quantization": Case(lambda e: estimate(PHI2, tokens=100, quantization="int4"), r"^estimate: quantization: .*got 'int4'\. Fix: pass 'nf4'"),
    "estimate double_quant": Case(lambda e: estimate(PHI2, tokens=100, double_quant="yes"), r"^estimate: double_quant: .*got 'yes'\. Fix: pass True"),
    "estimate attention": Case(lambda e: estimate(PHI2, tokens=100, attention="flash"), r"^estimate: attention: attention must be 'sdpa' or 'eager', got 'flash'\. Fix: pass 'sdpa'"),
    "estimate qa not a config": Case(lambda e: estimate(PHI2, tokens=100, qa={"lora_rank": 8}), r"^estimate: qa: qa must be a utils\.qa\.config\.QAConfig, got dict\. Fix: pass QAConfig\.resolve"),
    "estimate not a Phi": Case(lambda e: estimate(LlamaConfig(), tokens=10), r"^estimate: config: estimate\(\) counts the activations of Phi models.*Fix: pass a Phi model's config"),
    "estimate target not in a layer": Case(lambda e: estimate(PHI2, tokens=100, target_modules=["o_proj"]),
                                           r"^estimate: target_modules: target_modules \['o_proj'\] are not linear layers of a decoder layer; choose from \['dense'.*Fix: pass names from that list"),
    "estimate rank 0": Case(lambda e: estimate(PHI2, tokens=100, lora_rank=0), r"^LORA_RANK \(--lora-rank\): lora_rank must be a positive integer, got 0\. Fix: set it"),
    # ---- QA settings (QAConfig.resolve / replace): absurd numbers, types, lists, paths
    "max_steps 0": Case(lambda e: QAConfig.resolve("full", max_steps=0), r"^MAX_STEPS \(--max-steps\): max_steps must be a positive integer, got 0\. Fix: set it to a value that fits \(optimizer steps\); the full profile uses 100"),
    "max_steps negative": Case(lambda e: QAConfig.resolve("full", max_steps=-5), r"^MAX_STEPS \(--max-steps\): .*got -5\. Fix: set it"),
    "batch_size 0": Case(lambda e: QAConfig.resolve("full", batch_size=0), r"^BATCH_SIZE \(--batch-size\): batch_size must be a positive integer, got 0\. Fix: set it"),
    "grad_accum 0": Case(lambda e: QAConfig.resolve("full", grad_accum=0), r"^GRAD_ACCUM \(--grad-accum\): .*got 0\. Fix: set it"),
    "lora_rank 0": Case(lambda e: QAConfig.resolve("full", lora_rank=0), r"^LORA_RANK \(--lora-rank\): lora_rank must be a positive integer, got 0\. Fix: set it"),
    "lora_rank a bool": Case(lambda e: QAConfig.resolve("full", lora_rank=True), r"^LORA_RANK \(--lora-rank\): lora_rank must be an integer, got True \(bool\)\. Fix: write it like the default, 16"),
    "max_length 0": Case(lambda e: QAConfig.resolve("full", max_length=0), r"^MAX_LENGTH \(--max-length\): max_length must be a positive integer, got 0\. Fix: set it"),
    "learning_rate 0": Case(lambda e: QAConfig.resolve("full", learning_rate=0.0), r"^LEARNING_RATE \(--learning-rate\): learning_rate must be > 0, got 0\.0\. Fix: set it .*0\.0002"),
    "learning_rate negative": Case(lambda e: QAConfig.resolve("full", learning_rate=-1e-4), r"^LEARNING_RATE \(--learning-rate\): .*got -0\.0001\. Fix: set it"),
    "learning_rate inf": Case(lambda e: QAConfig.resolve("full", learning_rate=math.inf), r"^LEARNING_RATE \(--learning-rate\): learning_rate must be a finite number, got inf\. Fix: set it"),
    "lora_alpha 0": Case(lambda e: QAConfig.resolve("full", lora_alpha=0), r"^LORA_ALPHA \(--lora-alpha\): lora_alpha must be > 0, got 0\. Fix: set it"),
    "lora_dropout 1": Case(lambda e: QAConfig.resolve("full", lora_dropout=1.0), r"^LORA_DROPOUT \(--lora-dropout\): lora_dropout must be in \[0, 1\), got 1\.0\. Fix: set it"),
    "warmup_ratio 1": Case(lambda e: QAConfig.resolve("full", warmup_ratio=1.0), r"^WARMUP_RATIO \(--warmup-ratio\): warmup_ratio must be in \[0, 1\), got 1\.0\. Fix: set it"),
    "warmup_ratio negative": Case(lambda e: QAConfig.resolve("full", warmup_ratio=-0.1), r"^WARMUP_RATIO \(--warmup-ratio\): .*got -0\.1\. Fix: set it"),
    "max_grad_norm nan": Case(lambda e: QAConfig.resolve("full", max_grad_norm=math.nan), r"^MAX_GRAD_NORM \(--max-grad-norm\): max_grad_norm must be a finite number, got nan\. Fix: set it"),
    "save_steps 0": Case(lambda e: QAConfig.resolve("full", save_steps=0), r"^SAVE_STEPS \(--save-steps\): save_steps must be a positive integer, got 0\. Fix: set it"),
    "logging_steps 0": Case(lambda e: QAConfig.resolve("full", logging_steps=0), r"^LOGGING_STEPS \(--logging-steps\): .*got 0\. Fix: set it"),
    "logging_steps > max_steps": Case(lambda e: QAConfig.resolve("full", max_steps=5), r"^LOGGING_STEPS \(--logging-steps\): logging_steps=10 is more than max_steps=5: no training loss would ever be logged\. Fix: set logging_steps to at most 5"),
    "train_size negative": Case(lambda e: QAConfig.resolve("full", train_size=-1), r"^TRAIN_SIZE \(--train-size\): train_size must be a number of questions, or 0 for all, got -1\. Fix: set it"),
    "seed negative": Case(lambda e: QAConfig.resolve("full", seed=-1), r"^SEED \(--seed\): seed must be in \[0, 2\*\*32 - 1\].*got -1\. Fix: use a non-negative whole number"),
    "optimizer unknown": Case(lambda e: QAConfig.resolve("full", optimizer="adamw"), r"^OPTIMIZER \(--optimizer\): unknown optimizer 'adamw'.*\(close: \[.*Fix: use 'paged_adamw_8bit'"),
    "precision unknown": Case(lambda e: QAConfig.resolve("full", precision="fp8"), r"^PRECISION \(--precision\): precision must be one of \('auto', 'bf16', 'fp16', 'fp32'\), got 'fp8'\. Fix: use one of those"),
    "lr_scheduler unknown": Case(lambda e: QAConfig.resolve("full", lr_scheduler="cosine_annealing"), r"^LR_SCHEDULER \(--lr-scheduler\): .*got 'cosine_annealing'\. Fix: use one of those \(default 'cosine'\)"),
    "setting misspelt": Case(lambda e: QAConfig.resolve("full", lora_rnak=8), r"^QA settings: unknown QA setting\(s\) \['lora_rnak'\].*Fix: correct the name \(lora_rnak -> lora_rank\)"),
    "targets a string (config)": Case(lambda e: QAConfig.resolve("full", target_modules="q_proj"), r"^TARGET_MODULES \(--target-modules\): target_modules must be a list of layer names, e\.g\. \['q_proj'\], not the string 'q_proj'.*Fix: write it as a list, \['q_proj'\] \(on the command line: --target-modules q_proj\)"),
    "targets empty (config)": Case(lambda e: QAConfig.resolve("full", target_modules=[]), r"^TARGET_MODULES \(--target-modules\): target_modules is empty.*Fix: name the linear layers"),
    "targets repeated (config)": Case(lambda e: QAConfig.resolve("full", target_modules=["q_proj", "fc1", "q_proj"]), r"^TARGET_MODULES \(--target-modules\): target_modules names \['q_proj'\] more than once.*Fix: name each layer once"),
    "target empty name (config)": Case(lambda e: QAConfig.resolve("full", target_modules=["q_proj", " "]), r"^TARGET_MODULES \(--target-modules\): target_modules holds an empty name.*Fix: remove it"),
    "target not a string (config)": Case(lambda e: QAConfig.resolve("full", target_modules=["q_proj", 3]), r"^TARGET_MODULES \(--target-modules\): target_modules must be a list of strings, got \('q_proj', 3\).*Fix: write it like the default"),
    "all-linear with names (config)": Case(lambda e: QAConfig.resolve("full", target_modules=["all-linear", "fc1"]), r"^TARGET_MODULES \(--target-modules\): 'all-linear' \(every linear layer\) cannot be combined.*Fix: use \['all-linear'\] alone"),
    "columns missing a field": Case(lambda e: QAConfig.resolve("full", columns={"question": "q"}), r"^COLUMNS \(--columns\): .*missing \['answers', 'context'\]\. Fix: map all three"),
    "dataset file missing": Case(lambda e: QAConfig.resolve("smoke", dataset=str(e.tmp / "nope.json")), r"^DATASET \(--dataset\): the dataset file .*nope\.json does not exist\. Fix: point DATASET \(--dataset\) at a SQuAD JSON or JSON Lines file"),
    "dataset relative path missing": Case(lambda e: QAConfig.resolve("smoke", dataset="my_data/chats.jsonl"), r"^DATASET \(--dataset\): the dataset file my_data/chats\.jsonl does not exist\. Fix: point DATASET"),
    "dataset is a folder": Case(lambda e: QAConfig.resolve("smoke", dataset=str(e.tmp)), r"^DATASET \(--dataset\): the dataset file .* is a folder, not a file\. Fix: point DATASET"),
    "model folder missing": Case(lambda e: QAConfig.resolve("smoke", model_id=str(e.tmp / "no-model")), r"^MODEL_ID \(--model-id\): the model folder .*no-model does not exist\. Fix: point MODEL_ID \(--model-id\) at a folder saved with save_pretrained"),
    "model folder not a model": Case(lambda e: QAConfig.resolve("smoke", model_id=str(e.tmp)), r"^MODEL_ID \(--model-id\): the model folder .* holds no config\.json.*Fix: point MODEL_ID"),
    # ---- training (train_qa): the folder, resume/overwrite, and what needs the tokenizer; all before the model loads
    "config not a QAConfig": Case(lambda e: training.train_qa({"max_steps": 2}, e.tmp / "out"), r"^config: must be a utils\.qa\.config\.QAConfig, got dict\. Fix: build it with QAConfig\.resolve"),
    "max_length shorter than the prompt": Case(lambda e: training.train_qa(e.config(max_length=8), e.tmp / "out"),
                                               r"^MAX_LENGTH \(--max-length\): max_length=8 tokens cannot hold any example: the instruct prompt of .* takes \d+ tokens.*Fix: raise max_length well above that"),
    "output dir is a file": Case(lambda e: training.train_qa(e.config(), _file(e.tmp / "notes.txt")), r"^--output-dir .*notes\.txt: it is a file, not a folder\. Fix: choose a folder"),
    "output dir under a file": Case(lambda e: training.train_qa(e.config(), _file(e.tmp / "notes.txt") / "adapter"), r"^--output-dir .*notes\.txt/adapter: it cannot be created or written to \(.*\)\. Fix: choose a folder you can write to"),
    "output dir not writable": Case(lambda e: training.train_qa(e.config(), _not_writable(e)), r"^--output-dir .*adapter: it cannot be created or written to \(.*\)\. Fix: choose a folder you can write to"),
    "output holds an adapter": Case(lambda e: training.train_qa(e.config(), e.earlier_run("adapter_config.json", PARAMS_FILE)),
                                    r"^--output-dir .*run: it holds the results of an earlier run \(adapter_config\.json, training_params\.json\), which this run would overwrite\. Fix: pass --overwrite \(overwrite=True\) to replace them, --resume"),
    "output holds checkpoints": Case(lambda e: training.train_qa(e.config(), e.earlier_run("checkpoints/checkpoint-4/trainer_state.json")),
                                     r"^--output-dir .*run: it holds the results of an earlier run \(checkpoints/checkpoint-4\).*Fix: pass --overwrite"),
    "resume without a checkpoint": Case(lambda e: training.train_qa(e.config(), e.tmp / "fresh", resume=True), r"^--resume: there is no checkpoint to resume from in .*fresh/checkpoints\. Fix: drop --resume to start a new run"),
    "resume and overwrite": Case(lambda e: training.train_qa(e.config(), e.tmp / "out", resume=True, overwrite=True), r"^--resume and --overwrite: both were given.*Fix: pass one of them"),
    "resume with other settings": Case(lambda e: training.train_qa(e.config(lora_rank=8), _checkpoints_of(e, e.config(lora_rank=4)), resume=True),
                                       r"^--resume: the checkpoints in .* were written with other settings \(stored, given: \{'lora_rank': \[4, 8\]\}\).*Fix: resume with the stored settings"),
    "ensure_trained over checkpoints of other settings": Case(lambda e: training.ensure_trained(e.config(lora_rank=8), _checkpoints_of(e, e.config(lora_rank=4))),
                                                              r"run: it holds checkpoints of an unfinished run trained with other settings \(stored, wanted: \{'lora_rank': \[4, 8\]\}\); it is left as it is\. Fix: delete it"),
    "padded collator max_length 0": Case(lambda e: collate.PaddedCollator(0, max_length=0), r"^PaddedCollator max_length: must be a positive integer or None, got 0\. Fix: pass the max_length"),
    # ---- a model id that names a local folder (utils.models.loading.check_model_path, in every loader): notebooks
    # 01-03 (load_model, the tokenizer and the skeleton through resolve_model_path) and 06 (load_classifier)
    "load_model folder missing": Case(lambda e: load_model("./my-model"), r"^model_id \(MODEL_ID\): the model folder \./my-model does not exist\. Fix: point model_id \(MODEL_ID\) at a folder saved with save_pretrained, or give a Hub id such as microsoft/phi-2"),
    "load_model absolute folder missing": Case(lambda e: load_model(str(e.tmp / "nope")), r"^model_id \(MODEL_ID\): the model folder .*/nope does not exist\. Fix: point"),
    "load_model folder empty": Case(lambda e: load_model(str(e.tmp)), r"^model_id \(MODEL_ID\): the model folder .* holds no config\.json and no weights, so it is not a saved model \(it is empty\)\. Fix: point model_id \(MODEL_ID\) at the folder save_pretrained wrote"),
    "load_model folder without weights": Case(lambda e: load_model(str(_file(e.tmp / "config.json").parent)), r"^model_id \(MODEL_ID\): the model folder .* holds config\.json but no weights \(none of model\.safetensors"),
    "tokenizer folder missing": Case(lambda e: AutoTokenizer.from_pretrained(resolve_model_path("~/models/nope")), r"^model_id \(MODEL_ID\): the model folder ~/models/nope does not exist"),
    "notebook 03 skeleton folder missing": Case(lambda e: lora_parameters_per_rank("./my-model", "all-linear"), r"^model_id \(MODEL_ID\): the model folder \./my-model does not exist"),
    "notebook 06 classifier folder missing": Case(lambda e: load_classifier("./my-model", 2, "qlora"), r"^model_id \(MODEL_ID\): the model folder \./my-model does not exist"),
    "model folder without weights (config)": Case(lambda e: QAConfig.resolve("smoke", model_id=str(_file(e.tmp / "config.json").parent)), r"^MODEL_ID \(--model-id\): the model folder .* holds config\.json but no weights"),
    "packing multiple 0": Case(lambda e: collate.packing_collator(0, 0), r"^pack_multiple: multiple must be a positive integer, got 0\. Fix: pass e\.g\. 256"),
    "no training examples": Case(lambda e: training.make_trainer(None, None, []), r"^train_features: there are no examples to train on\. Fix: check the dataset"),
}


def _file(path: Path) -> Path:
    path.write_text("not a folder")
    return path


def _checkpoints_of(env: Env, config: QAConfig) -> Path:
    """A run folder whose checkpoints were written with ``config`` (as train_qa records them)."""
    out = env.earlier_run("checkpoints/checkpoint-2/trainer_state.json")
    save_params(out / run_folder.CHECKPOINTS, config, {})
    return out


def assert_ours(excinfo: pytest.ExceptionInfo) -> None:
    """The error is our InputError, raised by our code (its innermost frame is in utils/), not while handling a
    library's exception, and in input_error's form (where: problem. Fix: fix.)."""
    err = excinfo.value
    assert isinstance(err, InputError), type(err)
    frame = Path(str(excinfo.traceback[-1].path))
    assert frame.is_relative_to(REPO_ROOT / "utils"), f"raised in {frame}, not in utils/"
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__), repr(err.__context__)
    assert ": " in str(err) and ". Fix: " in str(err) and str(err).endswith("."), str(err)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_our_error_naming_the_field_and_the_fix(name, env):
    case = CASES[name]
    with pytest.raises(InputError, match=case.match) as excinfo:
        case.call(env)
    assert_ours(excinfo)


def test_settings_errors_are_config_errors_and_output_conflicts_are_file_exists_errors(env):
    """The narrower types the callers catch: ConfigError for a setting, FileExistsError for a folder in the way."""
    with pytest.raises(ConfigError):
        QAConfig.resolve("full", max_steps=0)
    with pytest.raises(FileExistsError):
        training.train_qa(env.config(), env.earlier_run("adapter_config.json"))


@pytest.mark.parametrize("argv,message", [
    (["--max-steps", "-3"], "MAX_STEPS (--max-steps): max_steps must be a positive integer, got -3. Fix: set it"),
    (["--target-modules", "q_proj", "q_proj"], "target_modules names ['q_proj'] more than once"),
    (["--resume"], "--resume: there is no checkpoint to resume from in"),
    (["--resume", "--overwrite"], "--resume and --overwrite: both were given"),
    (["--dataset", "missing/train.json"], "DATASET (--dataset): the dataset file missing/train.json does not exist"),
    # a negative number is the flag's value (argparse read "-1e-4" as an option: "expected one argument")
    (["--learning-rate", "-1e-4"], "LEARNING_RATE (--learning-rate): learning_rate must be > 0, got -0.0001. Fix: set it"),
    (["--seed", "-1"], "SEED (--seed): seed must be in [0, 2**32 - 1] (numpy's seeds), got -1"),
    (["--columns", '{"question": "q"'], """argument --columns: '{"question": "q"': it looks like a Python literal (a list, """
                                         "number or quoted string) but is not valid Python ('{' was never closed). Fix: write"),
    (["--model-id", "./my-model"], "MODEL_ID (--model-id): the model folder ./my-model does not exist. Fix: point MODEL_ID"),
])
def test_the_command_line_refuses_bad_input_as_a_usage_error(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        finetune.parse_args([*argv, "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err, err


def test_a_refused_run_leaves_no_folder_behind(tiny, tmp_path, capsys):
    """The output folder is checked without creating it: a run refused by a later check (no checkpoint to resume;
    max_length, which needs the tokenizer, found by train_qa) leaves no empty adapter or checkpoints/ folder."""
    out = tmp_path / "new" / "adapter"
    common = ["--model-id", str(tiny), "--target-modules", *PHI_TARGETS, "--dataset", str(DATA), "--train-size", "8",
              "--max-steps", "2", "--output-dir", str(out)]
    for argv in (["--resume"], ["--max-length", "8"]):
        with pytest.raises(SystemExit) as exit_info:
            finetune.main([*common, *argv])
        assert exit_info.value.code == 2 and "Traceback" not in capsys.readouterr().err
        assert not (tmp_path / "new").exists()
    with pytest.raises(InputError, match="no checkpoint to resume from"):
        training.train_qa(QAConfig.resolve("smoke", model_id=str(tiny), target_modules=PHI_TARGETS, dataset=str(DATA)),
                          out, resume=True)
    assert not (tmp_path / "new").exists()


def test_the_command_line_never_overwrites_an_earlier_run_unless_asked(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "adapter_config.json").write_text("{}")
    (out / PARAMS_FILE).write_text(json.dumps({}))
    with pytest.raises(SystemExit):
        finetune.parse_args(["--output-dir", str(out)])
    assert "holds the results of an earlier run" in capsys.readouterr().err
    assert finetune.parse_args(["--output-dir", str(out), "--overwrite"])[0].overwrite  # asked: accepted


def test_the_command_line_reports_what_training_finds_as_a_usage_error(tiny, tmp_path, capsys):
    """max_length against the prompt needs the tokenizer: train_qa finds it before the model loads; the command
    prints it as a usage error, not a traceback."""
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(["--model-id", str(tiny), "--target-modules", *PHI_TARGETS, "--dataset", str(DATA),
                       "--train-size", "8", "--max-length", "8", "--max-steps", "2", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert "MAX_LENGTH (--max-length): max_length=8 tokens cannot hold any example" in err
