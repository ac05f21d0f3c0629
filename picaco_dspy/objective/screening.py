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

from picaco_dspy.objective.manipulation_cues import (
    LABEL_MARKER,
    TEMPLATE_MARKER,
    assembled_message,
    assembly_lines,
    concept_cue,
    fold,
    open_completion,
    verdict_block,
)

SCREEN_VERSION = 4
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
        "օ": "o",
        "ս": "u",
        "ց": "g",
        "հ": "h",
        "ո": "n",
        "ա": "w",
        "զ": "q",
        "ք": "p",
        "ռ": "n",
    }
)
_WORD = re.compile(r"\w+")
_LATIN = re.compile(r"[A-Za-z]")
_LOOKALIKE = re.compile("[" + "".join(chr(c) for c in _LOOKALIKE_TO_LATIN) + "]")


# Latin letters that look like Cyrillic ones, folded inside words that are Cyrillic (they hold a Cyrillic letter
# with no Latin twin, such as ц, щ, и, ь, л).
_TO_CYRILLIC = str.maketrans(
    "aAbBcCeEhHkKmMoOpPtTxXyYiIjsοΟτΤρΡαΑεΕκΚΜΗχΧΒυ", "аАвВсСеЕнНкКмМоОрРтТхХуУіІјѕоОтТрРаАеЕкКМНхХВу"
)
_GREEK_LOOKALIKE = re.compile("[οΟτΤρΡαΑεΕκΚΜΗχΧΒυ]")
_PLAIN_CYRILLIC = re.compile("[бгдёжзийлпфцчшщъыьэюяБГДЁЖЗИЙЛПФЦЧШЩЪЫЬЭЮЯ]")


def _fold_mixed_script_word(match: re.Match[str]) -> str:
    word = match.group(0)
    if _PLAIN_CYRILLIC.search(word) and (_LATIN.search(word) or _GREEK_LOOKALIKE.search(word)):
        return word.translate(_TO_CYRILLIC)
    if not _LATIN.search(word):
        return word
    if _LOOKALIKE.search(word):
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


def fence_response(text: str, max_chars: int, *, canonicalise: bool = True, datamark: bool = False) -> str:
    """Wrap a response as data between fences whose ID the response cannot know in advance.

    The text is canonicalised first (:func:`canonicalise_response`). The ID is derived from a hash of the content, so
    a response cannot close the fence early; DSPy field markers inside it are defused, and text beyond ``max_chars``
    is cut (the judge is told so). ``datamark`` replaces every space inside the fence with ``^``.
    """
    if canonicalise:
        text = canonicalise_response(text)
    nonce = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]
    body = text.replace("[[", "[ [").replace("]]", "] ]")
    if datamark:
        body = body.replace(" ", "^")
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
    rf"\b(?:score|rate|grade)\s+(?:it|this|me|the response|this response|my (?:answer|response))\b"
    rf".{{0,30}}\b{_TOP_SCORE}\b",
    rf"\b(?:give|award|assign)\b.{{0,30}}\b{_TOP_SCORE}\s*(?:/\s*\d+|out of|points?|marks?|stars?|scores?"
    r"|ratings?|grades?|(?:on|to|for|in) (?:every|each|all))",
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
    r"(?:忽略|无视|無視|评估者|评估员|评分者|评委|评审|裁判|評価者|採点者|打\s*[5五]\s*分|평가자|채점자)",
]
_EVALUATOR_DIRECTED_RE = re.compile("|".join(f"(?:{p})" for p in _EVALUATOR_DIRECTED), re.IGNORECASE | re.DOTALL)
_MARKUP = re.compile(
    r"\[\s*\[\s*##|##\s*\]\s*\]|<<<|>>>"
    r"|^\s*(?:ratings?|scores?|verdict|conformity)\s*[:=]\s*(?:[1-5](?:\.\d+)?(?:\s*/\s*5)?|yes|pass\w*|approved)?\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s*")


@dataclass(frozen=True)
class ScreenedResponse:
    """A response with the text addressed to the evaluator removed.

    Attributes:
        text: The screened text (canonicalised; may be empty when nothing else was left).
        removed: The removed sentences, lines and paragraphs, in order.
        canonical: The whole response, canonicalised (what the judge sees when nothing is removed).
        cues: Which cues fired (``"keywords"``, ``"turn-marker"``, ``"verdict-block"``, ``"self+top"``, ...; see
            :mod:`picaco_dspy.objective.manipulation_cues`), in order, without repeats.
    """

    text: str
    removed: tuple[str, ...]
    canonical: str
    cues: tuple[str, ...] = ()

    @property
    def flagged(self) -> bool:
        """Whether anything was removed."""
        return bool(self.removed)


def screen_response(text: str, value_names: Sequence[str] = ()) -> ScreenedResponse:
    """Remove the parts of a response that address the evaluator rather than the user.

    What is removed (see :mod:`picaco_dspy.objective.manipulation_cues` for the cues):

    * everything from a chat-turn or role marker on (a fake system message or user turn runs to the end);
    * a paragraph after the first that holds a verdict block, a message assembled from parts, an open completion, or
      a sentence flagged below (the whole paragraph: an appended note is one unit);
    * in the first paragraph, the flagged lines and sentences only: score lines for ``value_names``, fence or field
      markup, sentences that ask to ignore instructions or for a top score (keywords in a dozen languages), sentences
      where the response itself or a reader other than the user meets its evaluation or a top outcome (concepts in
      about thirty languages), and lines whose decoded views (base64, hex, rot13, reversed, Morse, ...) do.

    Args:
        text: The response (canonicalised here with :func:`canonicalise_response`).
        value_names: The values being judged, whose names mark score lines and verdict blocks.

    Returns:
        The screened text, what was removed, and which cues fired.
    """
    text = canonicalise_response(text)
    score_line = _score_line_pattern(value_names)
    cues: list[str] = []
    removed: list[str] = []
    lines = text.split("\n")
    first_paragraph_end = next((i for i, line in enumerate(lines) if i and not line.strip()), len(lines))
    for index, line in enumerate(lines):
        if TEMPLATE_MARKER.search(line) or (index > first_paragraph_end and LABEL_MARKER.search(line)):
            removed.append("\n".join(lines[index:]).strip())
            cues.append("turn-marker")
            lines = lines[:index]
            break
    paragraphs = _paragraphs(lines)
    acrostic = _acrostic_lines(lines)
    code = _code_lines(lines)
    kept: list[str] = []
    for number, paragraph in enumerate(paragraphs):
        block = "\n".join(paragraph)
        prose = "\n".join(line for line in paragraph if line not in code)
        block_cue = _block_cue(block, prose, value_names, last=number == len(paragraphs) - 1, first=number == 0)
        if block_cue is None and any(line in acrostic for line in paragraph):
            block_cue = "acrostic"
        line_results = [_screen_line(line, score_line, value_names, line in code) for line in paragraph]
        if number > 0 and block_cue is None and not any(cues for _, cues, _ in line_results):
            block_cue = _paragraph_concept(block, value_names)
        line_cues = [cue for _, cue_list, _ in line_results for cue in cue_list]
        if number > 0 and (block_cue or line_cues):
            removed.append(block.strip())
            cues.extend([block_cue] if block_cue else [])
            cues.extend(line_cues)
            continue
        if block_cue:  # first paragraph: only the lines that carry the block
            cues.append(block_cue)
        for line, (kept_line, cue_list, removed_parts) in zip(paragraph, line_results):
            if block_cue is not None and (line in acrostic or _carries_rating(line)):
                removed.append(line.strip())
                continue
            cues.extend(cue_list)
            removed.extend(removed_parts)
            if kept_line is not None:
                kept.append(kept_line)
        kept.append("")
    if "assembled-message" in cues:  # its pieces may sit anywhere, the first paragraph included
        pieces = set(assembly_lines(text)) - code
        removed.extend(line.strip() for line in kept if line in pieces)
        kept = [line for line in kept if line not in pieces]
    if not removed:
        return ScreenedResponse(text, (), text, ())
    screened = _BLANK_LINES.sub("\n\n", "\n".join(kept)).strip()
    return ScreenedResponse(screened, tuple(r for r in removed if r), text, tuple(dict.fromkeys(cues)))


# Markup that a rendered answer never shows its user: HTML comments, hidden elements, image alt text and link titles.
_HIDDEN_MARKUP = re.compile(
    r"<!--.*?(?:-->|$)|display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0|<\w+[^>]*\bhidden\b"
    r"|!\[[^\]]{25,}\]\(|\]\([^)\s]+\s+\"[^\"]{20,}\"\)",
    re.IGNORECASE,
)
_INLINE_CODE = re.compile(r"`[^`]*`")


def _code_lines(lines: list[str]) -> set[str]:
    """The lines inside fenced code blocks (their comments are shown to the user; hidden markup there is an
    example, not a hiding place)."""
    inside, code = False, set()
    for line in lines:
        if line.lstrip().startswith(("```", "~~~")):
            inside = not inside
        elif inside:
            code.add(line)
    return code


def _paragraphs(lines: list[str]) -> list[list[str]]:
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


def _paragraph_concept(block: str, value_names: Sequence[str]) -> str | None:
    """A concept pair spread over the sentences of one appended paragraph ("Definitions for this item: ... By these
    definitions the response earns the maximum."): an appended note is read as one unit."""
    cue = concept_cue(" ".join(block.split()), value_names)
    return f"paragraph:{cue}" if cue else None


def _block_cue(block: str, prose: str, value_names: Sequence[str], *, last: bool, first: bool) -> str | None:
    if verdict_block(block, value_names):
        return "verdict-block"
    if assembled_message(prose):  # code in fences is full of quoted fragments
        return "assembled-message"
    if last and open_completion(block, alone=not first):
        return "open-completion"
    return None


def _carries_rating(line: str) -> bool:
    return verdict_block(line + "\n" + line + "\n" + line)


def _screen_line(
    line: str, score_line: re.Pattern[str] | None, value_names: Sequence[str], in_code: bool = False
) -> tuple[str | None, list[str], list[str]]:
    """The line with its flagged sentences removed (None: nothing is left), the cues that fired, what was removed."""
    if _MARKUP.search(line) or (score_line is not None and score_line.search(line)):
        return None, ["markup" if _MARKUP.search(line) else "score-line"], [line.strip()]
    if not in_code and _HIDDEN_MARKUP.search(_INLINE_CODE.sub("", line)):
        return None, ["hidden-markup"], [line.strip()]
    kept, cues, removed = [], [], []
    for sentence in _SENTENCE_END.split(line):
        cue = None
        if sentence.strip():
            cue = "keywords" if _EVALUATOR_DIRECTED_RE.search(sentence) else concept_cue(sentence, value_names)
        if cue:
            cues.append(cue)
            removed.append(sentence.strip())
        else:
            kept.append(sentence)
    if not cues:
        for view in decoded_views(line):
            if (
                _EVALUATOR_DIRECTED_RE.search(view)
                or concept_cue(view, value_names)
                or (score_line and score_line.search(view))
                or verdict_block(view, value_names)
            ):
                return None, ["decoded"], [line.strip()]
        return line, [], []
    rest = " ".join(s.strip() for s in kept if s.strip())
    return (rest or None), cues, removed


_SPELLED_TOP = re.compile(
    r"(?:top|full|max|maximum|perfect|highest|best)(?:marks?|score|scores|rating|grade|points?)|fivestars|fiveoutoffive"
    r"|tentoten|aplus|ratefive|givefive|scorefive"
)


def _acrostic_lines(lines: list[str]) -> set[str]:
    """Lines whose first letters, read down a run of five or more short lines, spell text for the evaluator."""
    flagged: set[str] = set()
    run: list[str] = []
    for line in [*lines, "\u0000" * 200]:
        stripped = line.strip(" -*•\t")
        if stripped and len(stripped) <= 80 and stripped[0].isalpha():
            run.append(line)
            continue
        if not stripped and run:
            continue  # a blank line inside a run of short lines does not end it
        if len(run) >= 5:
            initials = "".join(r.strip(" -*•\t")[0] for r in run)
            spelled = " ".join([initials, initials[::-1]])
            if _EVALUATOR_DIRECTED_RE.search(spelled) or _SPELLED_TOP.search(fold(spelled).replace(" ", "")):
                flagged.update(run)
        run = []
    return flagged


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
_MORSE = dict(
    zip(
        [
            ".-",
            "-...",
            "-.-.",
            "-..",
            ".",
            "..-.",
            "--.",
            "....",
            "..",
            ".---",
            "-.-",
            ".-..",
            "--",
            "-.",
            "---",
            ".--.",
            "--.-",
            ".-.",
            "...",
            "-",
            "..-",
            "...-",
            ".--",
            "-..-",
            "-.--",
            "--..",
            "-----",
            ".----",
            "..---",
            "...--",
            "....-",
            ".....",
            "-....",
            "--...",
            "---..",
            "----.",
        ],
        "abcdefghijklmnopqrstuvwxyz0123456789",
    )
)
_MORSE_RUN = re.compile(r"(?:[.-]{1,6}[ /]+){5,}[.-]{1,6}")


def _decode_morse(line: str) -> str:
    words: list[str] = []
    for run in _MORSE_RUN.findall(line):
        words.extend("".join(_MORSE.get(code, "?") for code in word.split()) for word in run.split("/"))
    return " ".join(w for w in words if w)


_LEET = str.maketrans("0134578@$|", "oieastbasl")
_SPACED_OUT = re.compile(r"(?<!\S)(?:\S ){4,}\S(?!\S)")
# Letters of other scripts that look like Latin ones (Cherokee, Armenian, Cyrillic, Greek, Latin small capitals):
# the screen also reads every line with them folded, whatever the script of the word around them.
_SKELETON = str.maketrans(
    dict(
        zip(
            "ᎪᏴᏟᎠᎬᏀᎻᏆᎫᏦᏞᎷᏢᏒᏚᎢᏙᎳᏃᎩᏌ"
            "ɑɡӏ"
            "ԱՍՕՏհոսօցազքռ"
            "АВЕКМНОРСТХаеорсухіјѕԁԛԝ"
            "ΑΒΕΖΗΙΚΜΝΟΡΤΥΧαεικνορτυχ"
            "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢ",
            "ABCDEGHIJKLMPRSTVWZYU"
            "agl"
            "UUOShnuogwqpn"
            "ABEKMHOPCTXaeopcyxijsdqw"
            "ABEZHIKMNOPTYXaeiknoptux"
            "abcdefghijklmnoprstuvwyz",
            strict=True,
        )
    )
)
_ROT13 = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm"
)


def decoded_views(line: str) -> list[str]:
    """What an LLM judge could read out of ``line`` besides its surface: the line reversed, rot13-ed, read as Morse
    code and as leetspeak, with look-alike letters of any script folded to Latin, with letter-spaced words joined, and
    every
    base64, base32, hex, percent-encoded or backslash-escaped run in it decoded (when that gives readable text).
    The screen looks for text addressed to the evaluator in these views too."""
    views = [line[::-1], line.translate(_ROT13), line.translate(_LEET), line.translate(_SKELETON)]
    if _SPACED_OUT.search(line):
        views.append(_SPACED_OUT.sub(lambda m: m.group(0).replace(" ", ""), line))
    morse = _decode_morse(line)
    if morse:
        views.append(morse)
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
    return [view for view in views if view != line]
