"""README.md's and benchmarks/README.md's measured figures are rendered from committed records through the templates
in tools/templates/ (tools/readme.py), never typed by hand."""

from __future__ import annotations

import json
import re

import pytest

from tools import readme

BLOCKS = {"README.md": ["course-times", "gpu-memory", "troubleshooting"],
          "benchmarks/README.md": ["classification-curve", "gpu-qa", "multi-gpu", "qa-real-data", "smoke-ablation",
                                   "smoke-classification", "smoke-figures", "smoke-quantization", "speed-levers",
                                   "suite-runs", "train-speed"]}


def test_the_generated_blocks_are_what_the_committed_records_render():
    blocks = readme.render_blocks(readme.load_records())
    assert sorted(blocks) == sorted(sum(BLOCKS.values(), []))
    for document in readme.DOCUMENTS:
        text = document.read_text()
        name = str(document.relative_to(readme.REPO_ROOT))
        assert sorted(readme.block_names(text)) == BLOCKS[name]
        assert readme.render(text, blocks) == text, f"{name}'s generated blocks are out of date: python -m tools.readme render"


def test_each_block_has_a_template_and_each_template_a_block():
    """The words of a block live in tools/templates/<block>.md (shared macros in _macros.md), none in Python."""
    templates = {p.stem for p in readme.TEMPLATES.glob("*.md") if not p.name.startswith("_")}
    assert templates == set(sum(BLOCKS.values(), [])) - {"troubleshooting"}


def test_the_renderer_holds_numbers_not_sentences():
    """No string of tools/readme.py's block functions is prose (docstrings and error messages aside): the sentences
    of the blocks are in the templates."""
    import ast
    import inspect

    source = inspect.getsource(readme)
    section = source[source.index("# --- the blocks"):source.index("def render(text")]
    tree = ast.parse(section)
    skip = {id(f.body[0].value) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and ast.get_docstring(f)}
    skip |= {id(n) for r in ast.walk(tree) if isinstance(r, ast.Raise) for n in ast.walk(r)}
    prose = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
             and id(n) not in skip and sum(w.isalpha() for w in n.value.split()) >= 4]
    assert not prose, f"sentences in the renderer (move them to tools/templates/): {prose}"


def test_a_figure_a_record_lacks_stops_the_rendering_with_what_to_run(tmp_path, monkeypatch):
    (tmp_path / "x.md").write_text("MFU {{ run.mfu|f('.0%') }}\n")
    monkeypatch.setattr(readme, "TEMPLATES", tmp_path)
    assert readme.template("x").render(run={"mfu": 0.321}) == "MFU 32%\n"
    with pytest.raises(readme.MissingFigure, match="results/2026-11-30_train_speed_squad_runF/record.jsonl has no "
                                                   "'mfu': write it again with python benchmarks/train_speed.py"):
        readme.template("x").render(run=readme.Record({}, "2026-11-30_train_speed_squad_runF/record.jsonl"))


def test_a_block_without_a_renderer_is_an_error():
    with pytest.raises(KeyError, match="'typo' has no renderer"):
        readme.render("<!-- begin: typo -->\nold\n<!-- end: typo -->", {"course-times": "x"})
    assert readme.render("a\n<!-- begin: b -->\nold\n<!-- end: b -->\n", {"b": "new\n"}) == \
        "a\n<!-- begin: b -->\nnew\n<!-- end: b -->\n"


def test_recording_a_course_run_needs_the_smoke_profiles_figures(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the whole course first"):
        readme.record_course(tmp_path, {"01": 1.0})
    (tmp_path / "04_qa_training.json").write_text(json.dumps({"profile": "full", "losses": [2.0, 1.0]}))
    (tmp_path / "05_qa_evaluation.json").write_text("{}")
    (tmp_path / "03_lora_rank_ablation.json").write_text("{}")
    with pytest.raises(ValueError, match="the README's figures are smoke's"):
        readme.record_course(tmp_path, {"01": 1.0})


def test_a_missing_figure_names_its_file_its_key_and_the_command_that_writes_it():
    record = readme.Record({"runs": {"naive": {}}}, "2026-11-23_train_speed_toy_run3/record.jsonl")
    with pytest.raises(readme.MissingFigure, match=r"results/2026-11-23_train_speed_toy_run3/record.jsonl has no 'runs/naive/mfu': write it "
                                                   r"again with python benchmarks/train_speed.py"):
        record["runs"]["naive"]["mfu"]


def test_the_sweep_of_notebook_02_is_reduced_to_what_the_readme_says():
    sweep = [{"weights": w, "method": m, "blocksize": b, "mse": mse, "bits": 4 + 32 / b + (16 / b if m == "int4_asym" else 0)}
             for w, rows in {"gaussian": {"nf4": [2, 3], "int4": [4, 5], "fp4": [6, 7], "int4_asym": [1, 4]},
                             "real": {"nf4": [2, 3], "int4": [1, 5], "fp4": [6, 7], "int4_asym": [3, 4]}}.items()
             for m, mses in rows.items() for b, mse in zip([32, 64], mses, strict=True)]
    nb01 = {"model": "m", "layer": "l", "per_tensor_share_on_3_central_levels": 0.9, "outlier_mse_ratio": {},
            "code_entropy_bits": {}, "shape": [4, 6], "packed_bytes_equal_bitsandbytes": True, "bits_per_weight": {}}
    nb02 = {"model": "m", "sweep": sweep, "blocksize": 64, "gaussian_mse_at_blocksize": {"int4": 5.0, "nf4": 2.0},
            "output_effect": {"float": {"rel_error": 0.0}, "nf4": {"rel_error": 0.2}}, "q4_1_vs_nf4": {},
            "requantizing_q4_1": {"perplexity": {}, "requantized": {}}}
    q = readme.quantization_summary(nb01, nb02)
    assert q["01"]["packed_bytes"] == 12  # 24 weights, two 4-bit codes per byte
    assert q["02"]["inputs"] == ["gaussian", "real"] and q["02"]["block_sizes"] == [32, 64]
    assert not q["02"]["nf4_below_symmetric_everywhere"]  # real, block 32: int4 1 < NF4 2
    assert q["02"]["asym_int4_below_nf4_at"] == {"gaussian": [32], "real": []}
    assert q["02"]["asym_int4_stores_more_bits_there"]
    assert q["02"]["gaussian_int4_over_nf4_mse"] == 2.5 and q["02"]["output_rel_error"] == {"nf4": 0.2}


def test_the_gpu_tables_in_markdown_and_profiler_text_are_read_with_their_dates(tmp_path, monkeypatch):
    monkeypatch.setattr(readme, "RESULTS_DIR", tmp_path)
    (tmp_path / "2026-11-23_notebooks_on_gpu").mkdir()
    (tmp_path / "2026-11-23_train_speed_toy_run2").mkdir()
    (tmp_path / "2026-11-23_notebooks_on_gpu/README.md").write_text(
        "# t\n\nDate: 2026-01-02.\n\n| pass | training (3 steps of 4 packed examples) | peak GiB, measured |\n"
        "|---|---|---|\n| bf16 | 1,021.9 s | 4.25 |\n")
    table = readme.markdown_table("2026-11-23_notebooks_on_gpu/README.md")
    assert table["measured"] == "2026-01-02"
    assert readme._number(readme.column(table, "bf16", "training")) == 1021.9
    with pytest.raises(readme.MissingFigure, match="no column starting with 'peak GiB, `utils'"):
        readme.column(table, "bf16", "peak GiB, `utils")
    (tmp_path / "2026-11-23_train_speed_toy_run2/profile_course_profiled.txt").write_text(
        "course_profiled: 7 steps; GPU kernels busy 5.50 s in all\n\n"
        "-----  -----\n      Name    Self CPU %    CPU time avg    Self CUDA %\n-----  -----\n"
        "aten::copy_         2.98%        22.306us         17.55%\nvoid kDequantizeBlockwise<a, b...    0.00%"
        "     0.000us     2.44%\n-----  -----\nSelf CPU time total: 6.827s\nSelf CUDA time total: 2.719ms\n")
    profile = readme.profile_table("2026-11-23_train_speed_toy_run2/profile_course_profiled.txt")
    assert (profile["config"], profile["steps"], profile["cpu_total_s"]) == ("course_profiled", 7, 6.827)
    assert profile["wall_s"] is None  # an older profile: no wall time in its first line
    (tmp_path / "p.txt").write_text((tmp_path / "2026-11-23_train_speed_toy_run2/profile_course_profiled.txt").read_text().replace(
        "7 steps; GPU", "7 steps in 20.43 s wall; GPU"))
    assert readme.profile_table("p.txt")["wall_s"] == 20.43
    assert profile["cuda_total_s"] == pytest.approx(2.719e-3)
    assert readme.op(profile, "aten::copy_", "CPU time avg") == pytest.approx(22.306e-6)
    assert readme.op(profile, "void kDequantizeBlockwise", "Self CUDA %") == pytest.approx(0.0244)
    with pytest.raises(FileNotFoundError, match="write it again with python benchmarks/train_speed.py"):
        readme._text("2026-11-23_train_speed_toy_run3/record.jsonl")


# --- no measured number typed into the README --------------------------------------------------------------------
# Outside the generated blocks, code fences and `code`, a number that looks measured (an amount of time or memory, a
# percentage, a ratio, dB, a rate, a decimal, a "±" or "→") fails the test below unless it is one of these,
# each a citation, a setting or an estimate that says it is one (a regex on the line -> why it may stay).
TYPED_NUMBERS = {
    r"2\.7-billion-parameter": "Phi-2's size, from its model card",
    r"Python 3\.11": "the Python version the course is tested with: a requirement",
    r"^\| 0\d \| [^|]+\| ~?(?:\d+–)?[\d.]+ (?:min|h)\b": "the course map's Colab T4 column: estimates, labelled so in "
                                                         "its header and in the sentence under the table",
    r"dropout 0\.1": "the assignment preset's setting",
}
UNIT = r"(?:%|GiB|MiB|GB|MB|dB|ms|s|min|minutes?|h|hours?|tokens/s|examples/s|TFLOP/s)(?![\w/])"
NUMBER = r"(?<![\w.`/-])\d[\d,]*(?:\.\d+)?"
LOOKS_MEASURED = re.compile(rf"{NUMBER}(?:\s?{UNIT}|[×x](?!\w)|\s?±|\s?→)|(?<![\w.`/-])\d+\.\d+(?!\.?\d)")


def typed_numbers(text: str) -> list[tuple[str, str]]:
    """(number, line) for each measured-looking number outside generated blocks, code fences and `code`."""
    text = re.sub(r"```.*?```", "", readme.BLOCK.sub("", text), flags=re.S)
    found = []
    for line in text.splitlines():
        prose = re.sub(r"`[^`]*`|\]\([^)]*\)|<!--.*?-->", "", line)
        allowed = [m.span() for pattern in TYPED_NUMBERS for m in re.finditer(pattern, prose)]
        found += [(m.group(), prose) for m in LOOKS_MEASURED.finditer(prose)
                  if not any(a <= m.start() and m.end() <= b for a, b in allowed)]
    return found


def test_no_measured_number_is_typed_into_the_readmes():
    documents = {str(d.relative_to(readme.REPO_ROOT)): d.read_text() for d in readme.DOCUMENTS}
    typed = [(name, n, line) for name, text in documents.items() for n, line in typed_numbers(text)]
    assert not typed, ("measured-looking numbers typed outside the generated blocks: "
                       + "; ".join(f"{name}: {n!r} in {line.strip()!r}" for name, n, line in typed)
                       + ". Render them from a results/ record (tools/templates/), or, if one is a citation, a setting "
                         "or a labelled estimate, add it to TYPED_NUMBERS with why.")
    prose = "\n".join(re.sub(r"```.*?```", "", readme.BLOCK.sub("", text), flags=re.S) for text in documents.values())
    unused = [p for p in TYPED_NUMBERS if not re.search(p, prose, re.M)]
    assert not unused, f"TYPED_NUMBERS entries that match nothing any more: {unused}"


def test_the_scan_catches_typed_figures_and_ignores_blocks_and_code():
    text = ("The step took 0.71 s, peak 4.25 GiB (82%), 1.64× faster, F1 0.41 ± 0.09, loss 53.0 → 67.1.\n"
            "<!-- begin: b -->\n5 s\n<!-- end: b -->\n```\n9 GiB\n```\n`-p T_DOF 2.0`, r = 16, 2 × 8, 8/64, 0.49.0\n")
    assert [n for n, _ in typed_numbers(text)] == ["0.71 s", "4.25 GiB", "82%", "1.64×", "0.41 ±", "0.09",
                                                    "53.0 →", "67.1"]
