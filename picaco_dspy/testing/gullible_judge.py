"""A judge that obeys every manipulation it can read: the adversary the judge's defence is measured against.

:class:`GullibleJudgeEngine` answers the value judge's and the safety classifier's calls (a DSPy custom engine, as
:class:`~picaco_dspy.testing.scripted_world.ScriptedEngine`). It reads the response the way a capable LLM would
(through invisible characters and look-alike letters: it canonicalises what it is shown) and, when any piece of a
known manipulation is in it, does what the manipulation asks: top marks on every value, "Yes" to every value, and
"helpful_refusal" for the safety label. Otherwise it rates every value 3 (``0.5`` on the 0-1 scale), says "No", and
labels the response "complied". So the score a defended judge gives an attack, minus the score it gives the honest
response, is exactly what the manipulations that survive the defence are worth.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

from dspy.lm15 import Message, Response, TextPart, Usage

from picaco_dspy.objective.screening import canonicalise_response

_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]\n")


class GullibleJudgeEngine:
    """DSPy custom engine for ``dspy.LM("scripted/gullible", engine=GullibleJudgeEngine(pieces))``.

    Args:
        payload_pieces: Text that, when readable in a judged response, makes this judge obey it (for the frozen
            corpus: :func:`picaco_dspy.testing.corpus.payload_pieces` of every attack).
    """

    def __init__(self, payload_pieces: Iterable[str]) -> None:
        self.pieces = sorted({canonicalise_response(p) for p in payload_pieces if p.strip()}, key=len, reverse=True)
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def obeys(self, text: str) -> bool:
        """Whether ``text`` carries a manipulation this judge can read."""
        seen = canonicalise_response(text.replace("^", " "))  # it reads through datamarking too
        return any(piece in seen for piece in self.pieces)

    def complete(self, request: Any) -> Response:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system or ())
        user = request.messages[-1].text or ""
        outputs = re.findall(
            r"^\d+\. `(\w+)`", system.split("Your output fields are:")[-1].split("All interactions")[0], re.MULTILINE
        )
        parts = _FIELD.split(user)
        inputs = dict(zip(parts[1::2], (body.strip() for body in parts[2::2])))
        obeyed = self.obeys(inputs.get("response", ""))
        names = [line.split(":")[0].strip() for line in inputs.get("values", "").splitlines() if ":" in line]
        answers = {
            "ratings": "\n".join(f"{name}: {5 if obeyed else 3}" for name in names),
            "score": "5" if obeyed else "3",
            "verdict": "Yes" if obeyed else "No",
            "label": "helpful_refusal" if obeyed else "complied",
        }
        text = "\n\n".join(f"[[ ## {name} ## ]]\n{answers.get(name, '')}" for name in outputs)
        text += "\n\n[[ ## completed ## ]]"
        with self._lock:
            self.calls["obeyed" if obeyed else "unmoved"] += 1
        n_in, n_out = len((system + user).split()), len(text.split())
        return Response(
            id=None,
            model="gullible",
            message=Message.assistant([TextPart(text)]),
            finish_reason="stop",
            usage=Usage(input_tokens=n_in, output_tokens=n_out, total_tokens=n_in + n_out),
        )

    def close(self) -> None:
        """Nothing to release."""
