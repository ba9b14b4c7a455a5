"""utils.qa.collate.pack_members: which examples pack_rows puts in each row (best-fit decreasing)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from utils.qa.collate import pack_members, pack_rows


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 16), min_size=1, max_size=30))
def test_every_example_in_one_row_that_holds_its_tokens(lengths):
    members = pack_members(lengths, 16)
    assert sorted(i for m in members for i in m) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in m) <= 16 for m in members)
    features = [{"input_ids": [i + 1] * n, "labels": [i + 1] * n} for i, n in enumerate(lengths)]
    rows = pack_rows(features, 16, 0)  # pack_rows lays out exactly these members, in this order
    for row, m in zip(rows, members, strict=True):
        tokens = [t for i in m for t in features[i]["input_ids"]]
        assert row["input_ids"][:len(tokens)] == tokens and row["real_tokens"] == len(tokens)


def test_best_fit_decreasing_on_a_known_case():
    # 9 opens row 0, 7 row 1 (no room in row 0), 6 row 2, 5 goes to the fullest row it fits in (row 1: 7 + 5 = 12)
    assert pack_members([5, 9, 7, 6], 12) == [[1], [2, 0], [3]]
