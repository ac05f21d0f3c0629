"""How ``picaco compile`` handles hostile files and arguments it was not written around.

Two sources, each probed in a fresh working folder with every model fenced off (``picaco_dspy.testing.cli_probe``):

* the frozen list ``picaco_dspy/testing/corpora/hostile_cli.json.gz`` (179 cases written by a helper from the
  ``--help`` text alone, without sight of the code);
* ``--random N`` inputs drawn from a seeded generator: value files, prompt files and numeric flags with random bytes,
  random JSON and random YAML-ish text (only inputs the library's own loaders reject are kept).

It prints inputs tried, clean refusals (exit 2, one line, no traceback, no model, no file written), tracebacks, model
loads or calls before the error, files written, and the cases that were not clean.

    python -m benchmarks.fuzz_inputs
    python -m benchmarks.fuzz_inputs --random 300 --seed 7
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from picaco_dspy.testing.cli_probe import ACCEPTED, ProbeResult, frozen_cases, run_case  # noqa: E402

PROMPTS = "\n".join(json.dumps({"prompt": p}) for p in ("Plan a picnic.", "Fix a bike.", "Learn chess.")) + "\n"


def random_cases(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` random hostile inputs that the library's loaders reject (so a clean refusal is the right answer)."""
    from picaco_dspy.errors import ValueSetError
    from picaco_dspy.objective.values import ValueSet
    from picaco_dspy.prompts.loading import PromptFileError, load_prompt_file

    rng = random.Random(seed)
    cases: list[dict[str, Any]] = []
    scratch = Path(tempfile.mkdtemp(prefix="picaco-fuzz-check-"))
    while len(cases) < count:
        kind = rng.choice(["values", "prompts", "number"])
        if kind == "number":
            flag = rng.choice(["--budget", "--budget-usd", "--iterations", "--beta", "--threads", "--request-timeout"])
            value = rng.choice(["nan", "inf", "-1", "0", "1e309", "abc", "", "0x10", "-inf", "1" * 400])
            if flag in ("--budget-usd", "--beta") and value == "0":
                continue  # zero is a legal beta; a zero USD budget is refused, but keep the list to the obvious
            cases.append(
                {
                    "id": f"random-{len(cases)}",
                    "files": {"p.jsonl": {"text": PROMPTS}},
                    "args": _args(f"{flag}={value}"),
                }
            )
            continue
        blob = _random_blob(rng)
        name = rng.choice(["v.yaml", "v.json"]) if kind == "values" else rng.choice(["p.jsonl", "p.csv"])
        (scratch / name).write_bytes(blob)
        try:
            if kind == "values":
                ValueSet.from_file(scratch / name)
                continue  # valid: not hostile
            if len(load_prompt_file(scratch / name)) >= 2:
                continue
        except (ValueSetError, PromptFileError):
            pass
        files = {name: {"base64": __import__("base64").b64encode(blob).decode()}}
        if kind == "values":
            files["p.jsonl"] = {"text": PROMPTS}
            args = _args(values=name)
        else:
            args = _args(prompts=name)
        cases.append({"id": f"random-{len(cases)}", "files": files, "args": args})
    return cases


def _random_blob(rng: random.Random) -> bytes:
    shape = rng.choice(["bytes", "json", "yaml", "lines"])
    if shape == "bytes":
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
    if shape == "json":
        return json.dumps(_random_json(rng, 3)).encode()
    if shape == "yaml":
        words = [
            "values:",
            "- name:",
            "definition:",
            "&a",
            "*a",
            "!!str",
            "{",
            "}",
            "[",
            "]",
            ":",
            "'",
            '"',
            "\n",
            "  ",
        ]
        return "".join(
            rng.choice(words) + rng.choice(["", " ", "x", "Care"]) for _ in range(rng.randrange(1, 40))
        ).encode()
    return "\n".join(json.dumps(_random_json(rng, 2)) for _ in range(rng.randrange(0, 5))).encode()


def _random_json(rng: random.Random, depth: int) -> Any:
    if depth == 0 or rng.random() < 0.3:
        return rng.choice([None, True, 3, -1.5, "", "prompt", "x" * rng.randrange(0, 40), float("nan")])
    if rng.random() < 0.5:
        return [_random_json(rng, depth - 1) for _ in range(rng.randrange(0, 4))]
    keys = ["prompt", "name", "definition", "values", "text", "", "q"]
    return {rng.choice(keys): _random_json(rng, depth - 1) for _ in range(rng.randrange(0, 4))}


def _args(*extra: str, values: str = "liberalism-4", prompts: str = "p.jsonl") -> list[str]:
    return ["--values", values, "--prompts", prompts, "--out", "out", "--proposer", "template", *extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=100, help="random hostile inputs to add (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-frozen", action="store_true", help="skip the frozen list")
    args = parser.parse_args()
    sources = {} if args.no_frozen else {"frozen list": [c for c in frozen_cases() if c["id"] not in ACCEPTED]}
    if args.random:
        sources[f"random (seed {args.seed})"] = random_cases(args.random, args.seed)
    print("| inputs | tried | clean | tracebacks | model touched before the error | files written | not one line |")
    print("|---|---|---|---|---|---|---|")
    failures: list[tuple[str, ProbeResult]] = []
    for name, cases in sources.items():
        counts: Counter[str] = Counter()
        for case in cases:
            result = run_case(case)
            counts["clean"] += result.clean
            counts["traceback"] += result.traceback
            counts["model"] += bool(result.model_touches)
            counts["files"] += bool(result.files_written)
            counts["lines"] += len([line for line in result.stderr.splitlines() if line.strip()]) != 1
            if not result.clean:
                failures.append((case["id"], result))
        print(
            f"| {name} | {len(cases)} | {counts['clean']} | {counts['traceback']} | {counts['model']} "
            f"| {counts['files']} | {counts['lines']} |"
        )
    if not args.no_frozen:
        print(
            f"\nAccepted as valid by design ({len(ACCEPTED)}): " + "; ".join(f"{k}: {v}" for k, v in ACCEPTED.items())
        )
    for case_id, result in failures:
        detail = result.crashed or " / ".join(result.stderr.strip().splitlines()[-2:])[:160]
        print(
            f"- {case_id}: exit {result.exit_code}, touched {result.model_touches}, "
            f"wrote {result.files_written[:3]}: {detail}"
        )


if __name__ == "__main__":
    main()
