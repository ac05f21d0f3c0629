"""One PICACO compile in the scripted world, as its own process (for kill/resume and multi-worker tests).

    python -m tests.support.scripted_run --storage URL --log CALLS.txt --out RESULT.json [--kill-after N] [--delay S]
        [--auto light] [--barrier DIR --workers K]

Every request the engine serves is appended to ``--log`` (one line: role and request hash) once it is answered, so
the tests can check across processes that no request was paid twice. ``--kill-after N`` SIGKILLs the process when
the engine receives its (N+1)-th request: a real crash, nothing is cleaned up. ``--barrier`` makes K processes start
their compile at the same moment. The compile's outcome is written to ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["DSPY_CACHEDIR"] = tempfile.mkdtemp(prefix="picaco-scripted-run-")  # no help from DSPy's own cache

import dspy  # noqa: E402

from picaco_dspy import PICACO, RedundancyScorer, TotalCorrelationBound, ValueJudge, ValueSet  # noqa: E402
from picaco_dspy.objective.redundancy import HashingEmbedder
from picaco_dspy.testing.scripted_world import ScriptedEngine, ScriptedReference  # noqa: E402

SETTINGS = dict(
    num_iterations=4,
    num_candidates=4,
    aligned_pool_size=3,
    noisy_pool_size=2,
    samples_per_prompt=2,
    seed=0,
    progress=False,
)
PROMPTS = [
    "How should I plan my weekend?",
    "Give me advice on a career change.",
    "What should I cook for friends?",
    "How do I pick a hobby?",
]


class Assistant(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.Predict("query -> response")

    def forward(self, query: str):
        return self.respond(query=query)


class RecordingEngine(ScriptedEngine):
    """Logs each served request; can kill its own process or slow down."""

    def __init__(self, log: Path, kill_after: int | None, delay: float) -> None:
        super().__init__()
        self.log, self.kill_after, self.delay = log, kill_after, delay
        self.received = 0
        self._count_lock = threading.Lock()

    def complete(self, request):
        with self._count_lock:
            self.received += 1
            if self.kill_after is not None and self.received > self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        if self.delay:
            time.sleep(self.delay)
        before = dict(self.calls)
        response = super().complete(request)
        role = next(r for r, n in self.calls.items() if n != before.get(r, 0))
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system or ())
        text = f"{system}{request.messages[-1].text or ''}|seed={request.config.seed}|t={request.config.temperature}"
        digest = hashlib.sha256(text.encode()).hexdigest()[:20]
        with self._count_lock, self.log.open("a", encoding="utf-8") as out:
            out.write(f"{role} {digest}\n")
            out.flush()
        return response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--storage", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kill-after", type=int)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--auto")
    parser.add_argument("--barrier", type=Path)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    engine = RecordingEngine(args.log, args.kill_after, args.delay)
    lm = dspy.LM("scripted/world", engine=engine, temperature=1.0, max_tokens=512)
    metric = TotalCorrelationBound(
        ValueSet.builtin("liberalism-4"),
        judge=ValueJudge(lm=lm),
        reference=ScriptedReference(),
        redundancy=RedundancyScorer(HashingEmbedder()),
    )
    settings = dict(SETTINGS)
    if args.auto:
        settings = {"auto": args.auto, "seed": 0, "progress": False, "noisy_pool_size": 2}
    optimizer = PICACO(
        metric=metric,
        prompt_model=lm,
        storage=args.storage,
        run_name="scripted",
        num_threads=args.threads,
        claim_timeout=3.0,
        **settings,
    )
    trainset = [dspy.Example(query=p).with_inputs("query") for p in PROMPTS]
    valset = [dspy.Example(query=f"Held-out question {i}").with_inputs("query") for i in range(3)]
    if args.barrier:  # start together
        args.barrier.mkdir(parents=True, exist_ok=True)
        (args.barrier / str(os.getpid())).touch()
        while len(list(args.barrier.iterdir())) < args.workers:
            time.sleep(0.05)
    with dspy.context(lm=lm):
        aligned = optimizer.compile(Assistant(), trainset=trainset, valset=valset)
    result = aligned.picaco_result
    args.out.write_text(
        json.dumps(
            {
                "final_instruction": result.final_instruction,
                "J": [r.J for r in result.iterations],
                "settings": [r.settings for r in result.iterations],
                "usage": result.usage,
                "worker_usage": result.worker_usage,
                "executed_jobs": result.executed_jobs,
                "reused_results": result.reused_results,
                "selection": result.selection.scores,
            }
        ),
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
