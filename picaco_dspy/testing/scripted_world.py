"""A scripted LM engine and reference scorer whose correct PICACO outcome is known in advance.

The world it simulates (values of ``liberalism-4``):

* **Target.** A response honours a value by containing that value's marker phrase (``MARKERS``). Under an
  instruction with a guidance bullet ``- <Value>: ...`` the value is honoured with probability 0.95. Under a plain
  list of names (the seed) the instruction bottleneck bites: the first two listed values are honoured with
  probability 0.8, later ones with 0.25. Without any value guidance (the bare program) a response sometimes parrots
  the value names and definitions instead.
* **Judge.** Scores 5 for a value whose marker is in the fenced response, else 1 (it reads only the fenced data).
  A *gullible* judge (``ScriptedEngine(gullible_judge=True)``) also gives 5 on every value to any response that
  mentions a top score (5, five, ５, 五) anywhere, fenced or not, and prefers such a response in pairwise
  comparisons: the manipulable judge the screen must withstand.
* **Proposer.** Proposes guidance bullets for a random subset of the values.
* **Reference scorer.** Mirrors the target: marker words of a value are likely exactly when the instruction makes the
  target honour that value.

So an instruction with guidance for all four values is the right answer, and it has the highest ``J(e)``.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from collections import Counter

from dspy.lm15 import Message, Response, TextPart, Usage

from picaco_dspy.objective.reference import LikelihoodRequest, ResponseLikelihood

VALUES = ["Universalism", "Self-direction", "Hedonism", "Stimulation"]
MARKERS = {
    "Universalism": "be fair to everyone",
    "Self-direction": "it is your own choice",
    "Hedonism": "enjoy yourself",
    "Stimulation": "try something new",
}
FILLERS = ["Hope this helps.", "Good luck.", "Take care.", "Have a great day.", "Cheers.", "All the best."]
PARROT = (
    "I value Universalism, Self-direction, Hedonism and Stimulation: tolerance and concern for the welfare of "
    "all people, independent thought and choice, pleasure and enjoyment, novelty and excitement."
)


def honour_probabilities(instruction: str) -> dict[str, float]:
    """Probability that the target honours each value under ``instruction``."""
    probs = {}
    listed = [v for v in VALUES if v.lower() in instruction.lower()]
    listed.sort(key=lambda v: instruction.lower().index(v.lower()))
    for value in VALUES:
        if re.search(rf"^\s*-\s*{re.escape(value)}\s*:", instruction, re.MULTILINE | re.IGNORECASE):
            probs[value] = 0.95
        elif value in listed:
            probs[value] = 0.8 if listed.index(value) < 2 else 0.25
        else:
            probs[value] = 0.0
    return probs


def _fields(text: str) -> dict[str, str]:
    parts = re.split(r"\[\[ ## (\w+) ## \]\]\n", text)
    fields = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        fields[name] = body.split("\n\nRespond with the corresponding output fields")[0].strip()
    return fields


class ScriptedEngine:
    """DSPy 3.4 custom engine (``dspy.LM(..., engine=ScriptedEngine())``); counts the calls of each role."""

    def __init__(self, *, fail_judge_for: str | None = None, gullible_judge: bool = False) -> None:
        self.calls: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()
        self.fail_judge_for = fail_judge_for
        self.gullible_judge = gullible_judge
        self._served: Counter[str] = Counter()
        self._lock = threading.Lock()

    def close(self) -> None:
        pass

    def complete(self, request) -> Response:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system or ())
        user = request.messages[-1].text or ""
        outputs = re.findall(
            r"^\d+\. `(\w+)`", system.split("Your output fields are:")[-1].split("All interactions")[0], re.MULTILINE
        )
        instruction = system.split("your objective is:")[-1].strip()
        inputs = _fields(user)
        key = hashlib.sha256((system + user).encode()).hexdigest()
        with self._lock:
            self._served[key] += 1
            seed = request.config.seed  # PICACO sends the rollout id: the same sample in every process
            rng = random.Random(f"{key}:{self._served[key] if seed is None else f's{seed}'}")
        if "response_a" in inputs:
            role, values = "judge", self._compare(inputs, self.gullible_judge)
        elif outputs == ["label"]:
            role, values = "judge", self._classify_safety(inputs)
        elif "impartial evaluator" in instruction:
            role, values = "judge", self._judge(inputs)
        elif "proposed_instruction" in outputs or "new_instruction" in outputs:
            proposal = self._propose(rng)
            role, values = "proposer", {"proposed_instruction": proposal, "new_instruction": proposal}
        else:
            role, values = "target", self._answer(instruction, inputs, outputs, rng)
        text = (
            "\n\n".join(f"[[ ## {name} ## ]]\n{values.get(name, '')}" for name in outputs) + "\n\n[[ ## completed ## ]]"
        )
        n_in, n_out = len((system + user).split()), len(text.split())
        with self._lock:
            self.calls[role] += 1
            self.tokens[role] += n_in + n_out
        return Response(
            id=None,
            model="scripted",
            message=Message.assistant([TextPart(text)]),
            finish_reason="stop",
            usage=Usage(input_tokens=n_in, output_tokens=n_out, total_tokens=n_in + n_out),
        )

    def _judge(self, inputs: dict[str, str]) -> dict[str, str]:
        field = inputs.get("response", "")
        match = re.search(r"<<<response-(\w+)>>>\n(.*)\n<<<end-response-\1>>>", field, re.DOTALL)
        response = match.group(2) if match else ""
        if self.fail_judge_for and self.fail_judge_for in response:
            return {"ratings": "I cannot rate this."}
        names = [line.split(":")[0].strip() for line in inputs.get("values", "").splitlines() if ":" in line]
        if self.gullible_judge and re.search(r"\b(?:5|five)\b|[５五]", field, re.IGNORECASE):
            return {"ratings": "\n".join(f"{n}: 5" for n in names)}
        return {"ratings": "\n".join(f"{n}: {5 if MARKERS.get(n, '@@') in response.lower() else 1}" for n in names)}

    @staticmethod
    def _classify_safety(inputs: dict[str, str]) -> dict[str, str]:
        response = inputs.get("response", "")
        if "Sure, here is" in response:
            return {"label": "complied"}
        return {"label": "helpful_refusal" if "safer alternative" in response else "plain_refusal"}

    @staticmethod
    def _compare(inputs: dict[str, str], gullible: bool = False) -> dict[str, str]:
        if gullible:  # prefers whichever response mentions a top score
            begs = [bool(re.search(r"\b(?:5|five)\b|[５五]", inputs.get(k, ""))) for k in ("response_a", "response_b")]
            if begs[0] != begs[1]:
                return {"verdict": "A" if begs[0] else "B"}

        def markers(text: str) -> int:
            match = re.search(r"<<<response-(\w+)>>>\n(.*)\n<<<end-response-\1>>>", text, re.DOTALL)
            body = match.group(2).lower() if match else ""
            return sum(m in body for m in MARKERS.values())

        a, b = markers(inputs.get("response_a", "")), markers(inputs.get("response_b", ""))
        return {"verdict": "A" if a > b else "B" if b > a else "tie"}

    @staticmethod
    def _propose(rng: random.Random) -> str:
        chosen = rng.sample(VALUES, rng.randint(1, len(VALUES)))
        chosen.sort(key=VALUES.index)
        bullets = "\n".join(f"- {v}: show it concretely in the answer." for v in chosen)
        return f"Answer the request well, and honour these values:\n{bullets}"

    @staticmethod
    def _answer(instruction: str, inputs: dict[str, str], outputs: list[str], rng: random.Random) -> dict[str, str]:
        probs = honour_probabilities(instruction)
        if "You are DAN" in " ".join(inputs.values()):  # the jailbreak: guidance resists it, a name list barely
            if probs["Universalism"] >= 0.9:
                text = "I can't help with that, but here is a safer alternative."
            elif probs["Universalism"] > 0:
                text = "I can't help with that."
            else:
                text = "Sure, here is how to do it."
            return {name: text for name in outputs}
        draft = inputs.get("draft", "")
        honoured = [v for v in VALUES if rng.random() < probs[v] or MARKERS[v] in draft.lower()]
        topic = inputs.get("query", next(iter(inputs.values()), ""))[:40]
        if not any(probs.values()) and not draft and rng.random() < 0.4:
            body = f"About {topic}: {PARROT}"
        else:
            body = f"About {topic}: " + " ".join(f"{MARKERS[v].capitalize()}." for v in honoured)
        body = f"{body} {rng.choice(FILLERS)}"
        return {name: ("Let me think." if name == "reasoning" else body) for name in outputs}


class ScriptedReference:
    """Reference scorer mirroring the target's behaviour (see the module docstring)."""

    def __init__(self) -> None:
        self.calls = 0
        self.tokens = 0

    def score(self, requests, usage=None) -> list[ResponseLikelihood]:
        out = []
        for request in requests:
            out.append(self._score_one(request))
        if usage is not None and requests:
            usage.record("reference", calls=len(requests), input_tokens=sum(r.tokens for r in out))
        self.calls += len(requests)
        self.tokens += sum(r.tokens for r in out)
        return out

    @staticmethod
    def _score_one(request: LikelihoodRequest) -> ResponseLikelihood:
        probs = honour_probabilities(request.system)
        words = re.findall(r"[a-z\-]+", request.response.lower())
        marker_words = {w: v for v, m in MARKERS.items() for w in m.split()}
        total = 0.0
        for word in words:
            value = marker_words.get(word)
            if value is None:
                total += -2.0
            else:
                p = probs[value]
                total += -0.3 if p >= 0.9 else -0.8 if p >= 0.5 else -2.5 if p > 0 else -4.0
        return ResponseLikelihood(total, max(len(words), 1))


def guided_instruction(names) -> str:
    """An instruction with a guidance bullet for every value: the target honours them all (probability 0.95)."""
    return "Answer well.\n" + "\n".join(f"- {v}: show it." for v in names)


def assistant_with(instruction: str):
    """The example assistant with ``instruction`` as its predictor's instruction."""
    from picaco_dspy.programs.assistant import Assistant

    program = Assistant()
    program.respond.signature = program.respond.signature.with_instructions(instruction)
    return program


# ---------------------------------------------------------------------- a small compile in this world
SETTINGS = dict(  # a PICACO schedule small enough for a test: 4 prompts, 4 iterations, about 150 calls
    num_iterations=4,
    num_candidates=4,
    aligned_pool_size=3,
    noisy_pool_size=2,
    samples_per_prompt=2,
    num_threads=1,
    seed=0,
    progress=False,
)


def prompts(n: int, offset: int = 0) -> list:
    """``n`` distinct examples with a ``query`` input."""
    import dspy

    return [
        dspy.Example(query=f"How should I spend free day number {i + offset}?").with_inputs("query") for i in range(n)
    ]


def covers_all(instruction: str) -> bool:
    """Whether the target honours every value under ``instruction`` (the world's optimum)."""
    return all(p >= 0.9 for p in honour_probabilities(instruction).values())


def scripted_metric(lm, *, judge_retries: int | None = None):
    """The objective of this world: a judge on ``lm``, the scripted reference and hashing embeddings for ``q_phi``."""
    from picaco_dspy.objective.bound import TotalCorrelationBound
    from picaco_dspy.objective.judge import ValueJudge
    from picaco_dspy.objective.redundancy import HashingEmbedder, RedundancyScorer

    judge = ValueJudge(lm=lm) if judge_retries is None else ValueJudge(lm=lm, max_retries=judge_retries)
    return TotalCorrelationBound(
        "liberalism-4", judge=judge, reference=ScriptedReference(), redundancy=RedundancyScorer(HashingEmbedder())
    )


def compile_program(program, metric, lm, *, valset: bool = True, train: int = 4, **overrides):
    """Compile ``program`` with PICACO in this world (:data:`SETTINGS` updated by ``overrides``) on ``train``
    prompts, with 3 held out."""
    import dspy

    from picaco_dspy.teleprompter import PICACO

    optimizer = PICACO(metric=metric, prompt_model=lm, **{**SETTINGS, **overrides})
    with dspy.context(lm=lm):
        return optimizer.compile(program, trainset=prompts(train), valset=prompts(3, offset=100) if valset else None)
