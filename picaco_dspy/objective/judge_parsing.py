"""Parsing judge answers: per-value 1-5 ratings, single scores, yes/no verdicts, and token log-probabilities.

Kept apart from the judge module so the parsers can be tested (and attacked) on their own. Every parser either
returns a complete, in-range result or raises :class:`JudgementParseError` saying what was wrong; none guesses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from picaco_dspy.errors import PicacoError

SCORE_MIN, SCORE_MAX = 1, 5


class JudgementParseError(PicacoError, ValueError):
    """A judge answer could not be read as a complete, in-range judgement."""


@dataclass(frozen=True)
class ParsedScore:
    """One score read from a judge answer.

    Attributes:
        score: The rating, 1-5.
        start: Character offset of the score's first digit in the parsed text (to find its token log-probability).
    """

    score: float
    start: int


def conformity_to_probability(conformity: float) -> float:
    """Map a 1-5 conformity to ``q(v|x,y)`` in (0, 1): the centre of the score's fifth of (0, 1).

    1 -> 0.1, 2 -> 0.3, 3 -> 0.5, 4 -> 0.7, 5 -> 0.9. A design choice (the paper does not say how its judge's score
    becomes a probability); it keeps ``log q`` finite and makes the neutral score 3 a probability of one half.
    """
    if not SCORE_MIN <= conformity <= SCORE_MAX:
        raise ValueError(f"conformity {conformity} is outside {SCORE_MIN}-{SCORE_MAX}")
    return (conformity - 0.5) / 5.0


def probability_to_conformity(probability: float) -> float:
    """Inverse of :func:`conformity_to_probability` for probabilities in [0.1, 0.9]."""
    return 5.0 * probability + 0.5


def normalise_label(text: str) -> str:
    """Lower-case a value name and drop spaces, hyphens, underscores and markdown emphasis."""
    return re.sub(r"[\s_\-*`'\"]+", "", text).casefold()


_LINE = re.compile(
    r"""^[\s>*#\-•]*(?:\d+[.)]\s*)?[*_`"']*(?P<name>[^:=\n]{1,80}?)[*_`"']*\s*(?:[:=]|\s[-–—]\s)\s*[*_`]*
        (?P<score>\d+(?:\.\d+)?)\s*(?:/\s*5|out\s+of\s+5)?[*_`]*""",
    re.VERBOSE | re.MULTILINE,
)


def parse_ratings(text: str, value_names: Sequence[str]) -> dict[str, ParsedScore]:
    """Read one 1-5 rating per value from a judge answer.

    Accepts ``Name: 4`` lines (with numbering, bullets, bold or ``/5``) or a JSON object ``{"Name": 4}``.

    Raises:
        JudgementParseError: a value is missing, rated twice with different scores, or rated outside 1-5.
    """
    if not isinstance(text, str) or not text.strip():
        raise JudgementParseError("the judge returned an empty answer")
    wanted = {normalise_label(n): n for n in value_names}
    found: dict[str, ParsedScore] = {}

    def _add(label: str, raw_score: Any, start: int) -> None:
        name = wanted.get(normalise_label(label))
        if name is None:
            return
        try:
            score = float(raw_score)
        except (TypeError, ValueError):
            raise JudgementParseError(f"the rating of {name!r} is not a number: {raw_score!r}") from None
        if not math.isfinite(score) or not SCORE_MIN <= score <= SCORE_MAX:
            raise JudgementParseError(f"the rating of {name!r} is {raw_score!r}, outside {SCORE_MIN}-{SCORE_MAX}")
        if name in found and found[name].score != score:
            raise JudgementParseError(
                f"{name!r} is rated twice with different scores ({found[name].score:g}, {score:g})"
            )
        found.setdefault(name, ParsedScore(score, start))

    for obj, offset in _json_objects(text):
        for key, raw in obj.items():
            if isinstance(key, str) and not isinstance(raw, (dict, list)):
                _add(key, raw, offset)
    if len(found) < len(wanted):
        for match in _LINE.finditer(text):
            _add(match.group("name"), match.group("score"), match.start("score"))
    missing = [n for n in value_names if n not in found]
    if missing:
        raise JudgementParseError(f"no rating found for {', '.join(map(repr, missing))}")
    return {n: found[n] for n in value_names}


_OUT_OF = re.compile(r"(?:/\s*5|out\s+of\s+5|\(1-5\)|1\s*(?:-|to)\s*5)", re.IGNORECASE)
_DIGIT = re.compile(r"(?<![\d.])([1-5])(?![\d.])")


def parse_single_score(text: str) -> ParsedScore:
    """Read one 1-5 score from an answer such as ``4``, ``Score: 4/5`` or ``4 out of 5``.

    Raises:
        JudgementParseError: no score, or several different candidate scores.
    """
    if not isinstance(text, str) or not text.strip():
        raise JudgementParseError("the judge returned an empty answer")
    masked = _OUT_OF.sub(lambda m: " " * len(m.group(0)), text)
    candidates = [(int(m.group(1)), m.start(1)) for m in _DIGIT.finditer(masked)]
    if not candidates:
        raise JudgementParseError(f"no 1-5 score in the answer {text[:80]!r}")
    if len({score for score, _ in candidates}) > 1:
        raise JudgementParseError(f"several different scores in the answer {text[:80]!r}")
    score, start = candidates[0]
    return ParsedScore(float(score), start)


_VERDICT = re.compile(r"^[\s*_`\"'>#\[\](){}]*(yes|no)\b", re.IGNORECASE)


def parse_verdict(text: str) -> bool:
    """Read a leading Yes/No verdict.

    Raises:
        JudgementParseError: the answer does not start with yes or no.
    """
    match = _VERDICT.match(text or "")
    if not match:
        raise JudgementParseError(f"the answer does not start with Yes or No: {str(text)[:80]!r}")
    return match.group(1).lower() == "yes"


# ---------------------------------------------------------------------------------------------- log-probabilities
def tokens_from_logprobs(logprobs: Any) -> list[Mapping[str, Any]]:
    """The token list of DSPy's ``pred.logprobs`` (``{"content": [...]}``), or ``[]`` when absent.

    Entries come back as plain dicts whether the engine gave dicts (DSPy's own clients) or objects (litellm's
    ``ChatCompletionTokenLogprob`` and ``TopLogprob``).
    """
    if not logprobs:
        return []
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else getattr(logprobs, "content", None)
    return [_as_entry(token) for token in content or []]


def _field(entry: Any, name: str) -> Any:
    return entry.get(name) if isinstance(entry, Mapping) else getattr(entry, name, None)


def _as_entry(token: Any) -> dict[str, Any]:
    top = _field(token, "top_logprobs") or []
    return {
        "token": _field(token, "token"),
        "logprob": _field(token, "logprob"),
        "top_logprobs": [{"token": _field(alt, "token"), "logprob": _field(alt, "logprob")} for alt in top],
    }


def expected_score_at(tokens: Sequence[Mapping[str, Any]], char_offset: int) -> float | None:
    """Expected 1-5 score from the alternatives of the token that holds the digit at ``char_offset``.

    ``char_offset`` counts characters in the concatenation of the token strings. Returns None when that token is not
    a bare digit or no digit alternatives are reported (the caller then keeps the parsed score).
    """
    position = 0
    for token in tokens:
        text = str(token.get("token", ""))
        if position <= char_offset < position + len(text):
            if text.strip() not in {"1", "2", "3", "4", "5"}:
                return None
            return _expected_digit(token)
        position += len(text)
    return None


def first_token_expected_score(tokens: Sequence[Mapping[str, Any]]) -> float | None:
    """Expected 1-5 score over the digit alternatives of the first answer token, whatever token was chosen.

    This reads a rating from a judge that starts its answer with something else (small models often do): the
    distribution it puts on the digits at the answer position is still a rating. None when no digit is among the
    reported alternatives.
    """
    return _expected_digit(tokens[0]) if tokens else None


def _expected_digit(token: Mapping[str, Any]) -> float | None:
    weights: dict[int, float] = {}
    alternatives = list(token.get("top_logprobs") or [])
    alternatives.append({"token": token.get("token"), "logprob": token.get("logprob")})
    for alt in alternatives:
        digit = str(alt.get("token", "")).strip()
        logprob = alt.get("logprob")
        if digit in {"1", "2", "3", "4", "5"} and logprob is not None and math.isfinite(float(logprob)):
            weights.setdefault(int(digit), math.exp(float(logprob)))
    total = sum(weights.values())
    if total <= 0:
        return None
    return sum(d * w for d, w in weights.items()) / total


def yes_probability(tokens: Sequence[Mapping[str, Any]]) -> float | None:
    """P(Yes) / (P(Yes) + P(No)) at the first generated token (the answer position), or None if not reported.

    Reads the token and its reported alternatives; variants with a leading space or other case count as the same word.
    """
    if not tokens:
        return None
    first = tokens[0]
    alternatives = list(first.get("top_logprobs") or [])
    alternatives.append({"token": first.get("token"), "logprob": first.get("logprob")})
    mass = {"yes": 0.0, "no": 0.0}
    seen: set[str] = set()
    for alt in alternatives:
        raw = str(alt.get("token", ""))
        if raw in seen or alt.get("logprob") is None:
            continue
        seen.add(raw)
        word = raw.strip(" \n\t*\"'`>#").lower()
        if word in mass:
            mass[word] += math.exp(float(alt["logprob"]))
    if mass["yes"] + mass["no"] <= 0:
        return None
    return mass["yes"] / (mass["yes"] + mass["no"])


def _json_objects(text: str) -> list[tuple[dict[str, Any], int]]:
    """Flat JSON objects embedded in ``text``, with their offsets (fenced code blocks included)."""
    objects = []
    for match in re.finditer(r"\{[^{}]*\}", text):
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            objects.append((obj, match.start()))
    return objects
