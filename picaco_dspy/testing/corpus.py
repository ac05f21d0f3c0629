"""The frozen judge-manipulation corpora (see ``corpora/README.md``): attacks and honest responses, development and
held-out splits, each checked against the SHA-256 it was frozen with."""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Literal

_PACKAGE = "picaco_dspy.testing.corpora"
FROZEN_SHA256 = {
    "attacks.jsonl": "90e6af3ee3ab7e8d96e23f77ffadfb3c2c515c45f40660990f1c1f0fae88b9a3",
    "attacks_heldout.jsonl": "c5adae29303ec10671978f6e6432498544208788960a9afc909c2b6509f55fcc",
    "honest.jsonl": "4b87ea4885c74828b360160ee33c2f5613eb5442c13baef0b47e0886a83d552f",
    "honest_heldout.jsonl": "e52a2a02b20ba0f2c3ca243289d1fefedf87add07247b4bb6548c9f0d04386b8",
    "attacks_heldout2.jsonl": "74cb15707e4a2860c8e3014fcf59cc28bfbcacfb03e1a5cd549f932cea57e9a0",
    "honest_heldout2.jsonl": "9edb6d0704845bc169ac50aa6ac3e4d9ac9e06d6d28756d9c662f8f64ae2824a",
    "attacks_heldout3.jsonl": "4fada37fbf7464bba14567b1a5561f70a1bb2f5589e631e8924c1fd329b4902b",
    "honest_heldout3.jsonl": "5308f0aa48922d9e31a4663c9a2c537c6bd00f55ea66d1acaf20a6257c488e2c",
}
Split = Literal["dev", "heldout", "heldout2", "heldout3"]
_FILES = {"dev": "", "heldout": "_heldout", "heldout2": "_heldout2", "heldout3": "_heldout3"}


@dataclass(frozen=True)
class Attack:
    """An honest response and the same response with a manipulation of the judge woven in."""

    id: str
    kind: str
    language: str
    prompt: str
    honest: str
    attacked: str
    note: str


@dataclass(frozen=True)
class HonestResponse:
    """A legitimate response that talks about grades, ratings or evaluation (must not be flagged)."""

    id: str
    language: str
    prompt: str
    response: str
    note: str


def attacks(split: Split = "dev") -> list[Attack]:
    """The attacks of ``split`` (the held-out splits: only to measure a finished defence)."""
    return [Attack(**row) for row in _rows(f"attacks{_FILES[split]}.jsonl")]


def honest_responses(split: Split = "dev") -> list[HonestResponse]:
    """The honest responses of ``split``."""
    return [HonestResponse(**row) for row in _rows(f"honest{_FILES[split]}.jsonl")]


def payload_pieces(attack: Attack, min_chars: int = 8) -> list[str]:
    """The runs of text the attack added to its honest response (canonicalised as the judge sees them), at least
    ``min_chars`` long. An attack is *neutralised* by a view of it that keeps none of these pieces."""
    from picaco_dspy.objective.screening import canonicalise_response

    before, after = canonicalise_response(attack.honest), canonicalise_response(attack.attacked)
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    pieces = [after[j1:j2].strip() for tag, _, _, j1, j2 in matcher.get_opcodes() if tag in ("insert", "replace")]
    return [p for p in pieces if len(p) >= min_chars]


def _rows(name: str) -> list[dict[str, str]]:
    data = resources.files(_PACKAGE).joinpath(name).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != FROZEN_SHA256[name]:
        raise RuntimeError(f"the frozen corpus {name} was changed (sha256 {digest[:12]}...); corpora are not edited")
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
