"""The frozen judge-manipulation corpora load, meet the sizes the defence is measured on, and cannot be edited to fit
a defence (each file is checked against the SHA-256 it was frozen with)."""

from collections import Counter

import pytest

from picaco_dspy.testing import corpus


def test_corpora_are_frozen_and_large_enough():
    dev, heldout = corpus.attacks("dev"), corpus.attacks("heldout")
    everything = dev + heldout
    assert len(everything) >= 100 and len({a.id for a in everything}) == len(everything)
    kinds = Counter(a.kind for a in everything)
    assert len(kinds) >= 12 and min(kinds.values()) >= 6
    assert len({a.language for a in everything}) >= 20
    assert all(a.attacked != a.honest for a in everything)
    assert {a.kind for a in heldout} == set(kinds)  # every kind is held out too
    honest = corpus.honest_responses("dev") + corpus.honest_responses("heldout")
    assert len(honest) >= 40 and len({h.id for h in honest}) == len(honest)


def test_an_edited_corpus_file_is_refused(monkeypatch):
    monkeypatch.setitem(corpus.FROZEN_SHA256, "honest.jsonl", "0" * 64)
    with pytest.raises(RuntimeError, match="was changed"):
        corpus.honest_responses("dev")
