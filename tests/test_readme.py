"""The README's measured figures are rendered from committed records (utils/readme.py), never typed by hand."""

from __future__ import annotations

import json

import pytest

from utils import readme


def test_the_readmes_generated_blocks_are_what_the_committed_records_render():
    text = readme.README.read_text()
    assert sorted(readme.block_names(text)) == ["course-times", "smoke-ablation", "smoke-figures", "suite-runs"]
    rendered = readme.render(text, readme.render_blocks(*readme.load_records()))
    assert rendered == text, "README.md's generated blocks are out of date: python -m utils.cli.readme render"


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
