"""What a judge sees of a response: canonicalised text, fenced as untrusted data, and a screened view without the
text addressed to the evaluator.

A response is attacker-controlled data for the judge. Three defences live here:

* :func:`canonicalise_response` folds the tricks that hide text from a reader (compatibility forms, invisible
  characters, mixed-script look-alike words, padding);
* :func:`fence_response` wraps the text between markers derived from its hash, so it cannot close its own fence;
* :func:`screen_response` removes the sentences that talk to the evaluator instead of the user (instructions to
  ignore the rubric, requests for a score, score blocks, fences, DSPy field markers), in several languages. The
  judge then also rates the screened view and keeps the lower score per value, so a response can never score above
  its screened self.

The screen is a heuristic: it is meant to catch manipulation, not to judge content. A false positive costs one more
judgement of the same response without the flagged sentence (and the lower of the two scores).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SCREEN_VERSION = 3
"""Bumped whenever canonicalisation or screening changes what the judge sees (part of a stored run's identity)."""

# Invisible characters that are not format (Cf) characters: fillers, the combining grapheme joiner, variation
# selectors (which can smuggle bytes, one per selector). Every Cf character (zero-width, bidi controls, the tag block
# U+E0000-E007F that can spell hidden ASCII) is removed as well, by category.
_INVISIBLE = re.compile("[\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0\ufe00-\ufe0f\U000e0100-\U000e01ef]")
_CHARACTER_RUN = re.compile(r"(.)\1{15,}", re.DOTALL)
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
_SPACE_RUN = re.compile(r"[ \t\u00a0]{4,}")

# Cyrillic and Greek letters that look like Latin ones; folded only inside words that also contain Latin letters
# (a mixed-script word is a spoof; genuine Russian or Greek text is left alone).
_LOOKALIKE_TO_LATIN = str.maketrans(
    {
        "а": "a",
        "в": "b",
        "е": "e",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "т": "t",
        "у": "y",
        "х": "x",
        "і": "i",
        "ј": "j",
        "ѕ": "s",
        "ԁ": "d",
        "ԛ": "q",
        "ԝ": "w",
        "ү": "y",
        "һ": "h",
        "А": "A",
        "В": "B",
        "Е": "E",
        "К": "K",
        "М": "M",
        "Н": "H",
        "О": "O",
        "Р": "P",
        "С": "C",
        "Т": "T",
        "Х": "X",
        "І": "I",
        "Ј": "J",
        "Ѕ": "S",
        "α": "a",
        "ε": "e",
        "ι": "i",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "Α": "A",
        "Β": "B",
        "Ε": "E",
        "Ζ": "Z",
        "Η": "H",
        "Ι": "I",
        "Κ": "K",
        "Μ": "M",
        "Ν": "N",
        "Ο": "O",
        "Ρ": "P",
        "Τ": "T",
        "Υ": "Y",
        "Χ": "X",
    }
)
_WORD = re.compile(r"\w+")
_LATIN = re.compile(r"[A-Za-z]")
_LOOKALIKE = re.compile("[" + "".join(chr(c) for c in _LOOKALIKE_TO_LATIN) + "]")


def _fold_mixed_script_word(match: re.Match[str]) -> str:
    word = match.group(0)
    if _LATIN.search(word) and _LOOKALIKE.search(word):
        return word.translate(_LOOKALIKE_TO_LATIN)
    return word


def canonicalise_response(text: str) -> str:
    """The text a judge should see: Unicode compatibility forms folded (NFKC: full-width and styled letters become
    plain ones), every format (Cf) character removed (zero-width and direction controls, the tag characters that can
    spell hidden ASCII; a Persian zero-width non-joiner goes too, which leaves the word readable), variation selectors
    and fillers removed, Cyrillic/Greek look-alikes inside Latin words folded to Latin, and padding (runs of one
    character, blank lines, spaces) collapsed, so that hidden or padded instructions cannot slip past the fence or
    push content out of the judged window."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    text = _INVISIBLE.sub("", text)
    text = _WORD.sub(_fold_mixed_script_word, text)
    text = _CHARACTER_RUN.sub(lambda m: m.group(1) * 3 + "[...]", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return _SPACE_RUN.sub("   ", text)


def fence_response(text: str, max_chars: int, *, canonicalise: bool = True) -> str:
    """Wrap a response as data between fences whose ID the response cannot know in advance.

    The text is canonicalised first (:func:`canonicalise_response`). The ID is derived from a hash of the content, so
    a response cannot close the fence early; DSPy field markers inside it are defused, and text beyond ``max_chars``
    is cut (the judge is told so).
    """
    if canonicalise:
        text = canonicalise_response(text)
    nonce = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]
    body = text.replace("[[", "[ [").replace("]]", "] ]")
    if len(body) > max_chars:
        body = body[:max_chars] + f"\n[... {len(text) - max_chars} more characters cut by the evaluator ...]"
    return f"<<<response-{nonce}>>>\n{body}\n<<<end-response-{nonce}>>>"


# ---------------------------------------------------------------- screening
_TOP_SCORE = r"(?:5|five|10|ten|100|full|maximum|max|top|perfect|highest)"
_EVALUATOR_DIRECTED = [
    # English: instructions to drop the rubric, words to the evaluator, requests for a top score
    r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,40}\b(?:instructions?|prompts?|rules?|rubric"
    r"|guidelines?)\b",
    r"\b(?:evaluators?|evaluation mode|graders?|assessors?|raters?|scorers?|ai judge|dear judge|(?:to|for) the judge"
    r"|judge model|reward model|scoring model)\b",
    r"\b[1-5]\s*(?:/|out of)\s*(?:5|five)\b",
    rf"\b(?:score|rate|grade)\s+(?:it|this|me|the response|this response|my (?:answer|response)|every|each|all)\b"
    rf".{{0,30}}\b{_TOP_SCORE}\b",
    rf"\b(?:give|award|assign)\b.{{0,30}}\b{_TOP_SCORE}\s*(?:/\s*\d+|out of|points?|marks?|stars?|scores?"
    r"|ratings?|grades?|(?:on|to|for|in) (?:every|each|all))",
    r"\b(?:full|maximum|max|top|perfect|highest)\s+(?:points|marks|scores?|ratings?|grades?)\b",
    r"\b(?:5|five)\b.{0,30}\b(?:every|each|all)\b.{0,15}\bvalues?\b",
    # Spanish, Portuguese, French, German, Italian
    r"\b(?:ignora|ignore[sz]?|ignoriere|ignorieren)\b.{0,30}\b(?:instrucciones|instruções|instructions|anweisungen"
    r"|istruzioni|indicaciones)\b",
    r"\b(?:evaluador(?:a|es)?|calificador|avaliador(?:es)?|évaluateur|évaluatrice|correcteur|bewerter|prüfer"
    r"|gutachter|valutatore|valutatrice)\b",
    r"\b[1-5]\s*(?:sur|von|de|su|em)\s*5\b",
    r"\b(?:asigna|asignar|otorga|atribua|attribue[zr]?|vergib|vergeben|assegna)\b.{0,30}\b5\b",
    # Russian, Chinese, Japanese, Korean
    r"(?:игнорир|проигнорир|оценщик|экзаменатор|5\s*балл|пять\s*балл)",
    r"(?:忽略|无视|無視|评估者|评估员|评分者|评委|评审|裁判|評価者|採点者|满分|満点|打\s*[5五]\s*分|평가자|채점자|만점)",
]
_EVALUATOR_DIRECTED_RE = re.compile("|".join(f"(?:{p})" for p in _EVALUATOR_DIRECTED), re.IGNORECASE | re.DOTALL)
_MARKUP = re.compile(
    r"\[\s*\[\s*##|##\s*\]\s*\]|<<<|>>>|^\s*(?:ratings?|scores?|verdict|conformity)\s*[:=]",
    re.IGNORECASE | re.MULTILINE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


@dataclass(frozen=True)
class ScreenedResponse:
    """A response with the text addressed to the evaluator removed.

    Attributes:
        text: The screened text (canonicalised; may be empty when nothing else was left).
        removed: The removed sentences and lines, in order.
        canonical: The whole response, canonicalised (what the judge sees when nothing is removed).
    """

    text: str
    removed: tuple[str, ...]
    canonical: str

    @property
    def flagged(self) -> bool:
        """Whether anything was removed."""
        return bool(self.removed)


def screen_response(text: str, value_names: Sequence[str] = ()) -> ScreenedResponse:
    """Remove the sentences of a response that address the evaluator rather than the user.

    A line is removed when it is a score line for one of ``value_names`` (``Name: 5``, ``"Name": 5``) or carries fence
    or field markup; a sentence is removed when it tells the reader to ignore instructions, addresses an evaluator,
    grader or judge, or asks for a top score, in English or several other languages.

    Args:
        text: The response (canonicalised here with :func:`canonicalise_response`).
        value_names: The values being judged, whose names mark score lines.

    Returns:
        The screened text and what was removed.
    """
    text = canonicalise_response(text)
    score_line = _score_line_pattern(value_names)
    kept_lines: list[str] = []
    removed: list[str] = []
    for line in text.split("\n"):
        hidden = any(
            _EVALUATOR_DIRECTED_RE.search(view) or (score_line is not None and score_line.search(view))
            for view in decoded_views(line)
        )
        if hidden or _MARKUP.search(line) or (score_line is not None and score_line.search(line)):
            if line.strip():
                removed.append(line.strip())
            continue
        sentences = [s for s in _SENTENCE_END.split(line)]
        kept = []
        for sentence in sentences:
            if sentence.strip() and _EVALUATOR_DIRECTED_RE.search(sentence):
                removed.append(sentence.strip())
            else:
                kept.append(sentence)
        if len(kept) == len(sentences):
            kept_lines.append(line)
        elif any(s.strip() for s in kept):
            kept_lines.append(" ".join(s.strip() for s in kept if s.strip()))
    screened = _BLANK_LINES.sub("\n\n", "\n".join(kept_lines)).strip()
    return ScreenedResponse(screened if removed else text, tuple(removed), text)


def _score_line_pattern(value_names: Sequence[str]) -> re.Pattern[str] | None:
    names = [re.escape(unicodedata.normalize("NFKC", n)) for n in value_names if n.strip()]
    if not names:
        return None
    return re.compile(rf"[\"']?(?:{'|'.join(names)})[\"']?\s*[:=]\s*[\"']?\d+(?:\.\d+)?\b", re.IGNORECASE)


_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_BASE32 = re.compile(r"[A-Z2-7]{16,}=*")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}[ :]?){8,}")
_PERCENT = re.compile(r"(?:%[0-9A-Fa-f]{2}|[A-Za-z0-9._~-]){0,20}(?:%[0-9A-Fa-f]{2}[A-Za-z0-9._~+-]*){3,}")
_ESCAPES = re.compile(r"(?:\\[uU][0-9a-fA-F]{4}){4,}|(?:\\x[0-9a-fA-F]{2}){4,}")
_ROT13 = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm"
)


def decoded_views(line: str) -> list[str]:
    """What an LLM judge could read out of ``line`` besides its surface: the line reversed and rot13-ed, and every
    base64, base32, hex, percent-encoded or backslash-escaped run in it decoded (when that gives readable text).
    The screen looks for text addressed to the evaluator in these views too."""
    views = [line[::-1], line.translate(_ROT13)]
    decoders: list[tuple[re.Pattern[str], Any]] = [
        (_BASE64, lambda s: base64.b64decode(s + "=" * (-len(s) % 4), validate=True)),
        (_BASE32, lambda s: base64.b32decode(s + "=" * (-len(s) % 8))),
        (_HEX, lambda s: bytes.fromhex(re.sub(r"[ :]", "", s))),
        (_PERCENT, lambda s: urllib.parse.unquote(s).encode()),
        (_ESCAPES, lambda s: s.encode().decode("unicode_escape").encode("utf-8", "surrogatepass")),
    ]
    for pattern, decode in decoders:
        for match in pattern.finditer(line):
            try:
                text = decode(match.group(0).strip()).decode("utf-8")
            except (ValueError, UnicodeError, binascii.Error):
                continue
            if text and sum(c.isprintable() or c.isspace() for c in text) >= 0.9 * len(text):
                views.append(canonicalise_response(text))
    return views
