"""Judge designs against human value labels, side by side: mean Spearman [95 % CI], pairwise accuracy, halves.

Reads a labelled file (Value Portrait's dev split from ``../shared/datasets/`` by default; never copied into the
repository) and scores every response with each design, next to a response-length baseline:

- ``yes-no``: the embedded default judge (P(Yes) of "Does the response reflect this value?");
- ``rating``: the 1-5 question read as the expected digit under the embedded model's digit probabilities;
- ``pmi``: how much the response raises the embedded model's likelihood of the value statement;
- ``embedding``: MiniLM cosine between the response and the value statement;
- any litellm model string (``--judges``), judged as ``picaco --judge`` would.

Each design is also shown *contrasted* (minus the response's mean over the values) and the generative designs are
combined by mean rank. Scores are cached per design (``--cache``), so adding a design or an ensemble re-scores
nothing. The two last columns are the mean Spearman on the first and on the second half of the queries: a design
chosen on one half should hold on the other.

    python -m benchmarks.judge_agreement --values liberalism-4 --designs yes-no rating pmi embedding
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DSPY_CACHEDIR", tempfile.mkdtemp(prefix="judge-agreement-"))  # times without old answers

DEFAULT_LABELS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "value_portrait_dev.jsonl"
LOCAL_DESIGNS = ("yes-no", "rating", "pmi", "embedding")


def _scorer(design: str, values, api_base: str | None, adapter: str) -> Callable[[str, str], dict[str, float]]:
    from picaco_dspy.models.from_spec import make_metric
    from picaco_dspy.objective import value_readings

    if design == "yes-no":
        design = "local"
    readers = {
        "rating": value_readings.RatingLikelihood,
        "pmi": value_readings.ValueStatementLikelihood,
        "embedding": value_readings.ValueStatementSimilarity,
    }
    if design in readers:
        reader = readers[design]()
        return lambda p, r: reader.scores(p, r, values)
    judge = make_metric(values, design, None, 256, api_base, adapter=adapter).judge
    return lambda p, r: judge.judge(p, r, values).conformity


def recital_lines(labels: Path, variants: dict[str, tuple[list, float]], limit: int | None) -> list[str]:
    """For files whose lines name each response's ``kinds`` with a ``recital`` (names every value, acts on none):
    per design, how often the recital ranks first on a value and how often the response that honours it does."""
    import numpy as np

    rows = [json.loads(line) for line in labels.read_text().splitlines() if line.strip()][:limit]
    if not rows or "recital" not in rows[0].get("kinds", []):
        return []
    lines = ["", "recital (names every value, acts on none) vs the response that honours the value, top rank share:"]
    for name, (scores, _) in variants.items():
        recital_top = target_top = count = 0
        for row, query_scores in zip(rows, scores):
            kinds = [k.lower() for k in row["kinds"]]
            for value, judged in query_scores.items():
                order = np.asarray(judged).argsort(kind="stable")[::-1]
                key = value.lower().replace("_", "-")
                recital_top += kinds[order[0]] == "recital"
                target_top += kinds[order[0]] == key
                count += 1
        lines.append(
            f"  {name:<44} recital {recital_top / count:>4.0%}   honouring response {target_top / count:>4.0%}"
        )
    return lines


def main() -> None:
    from picaco_dspy.evaluation.judge_agreement import (
        agreement,
        agreement_table,
        collect_scores,
        contrast_scores,
        load_labelled,
        rank_ensemble,
    )
    from picaco_dspy.objective.values import ValueSet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS)
    parser.add_argument("--values", default="liberalism-4")
    parser.add_argument("--designs", nargs="*", default=list(LOCAL_DESIGNS), help=f"of {LOCAL_DESIGNS}")
    parser.add_argument("--judges", nargs="*", default=[], help="litellm model strings, as picaco's --judge")
    parser.add_argument("--api-base", help="OpenAI-compatible server for the --judges models")
    parser.add_argument("--adapter", default="auto", choices=["auto", "chat", "plain"], help="as picaco's --adapter")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--cache", type=Path, default=Path("runs/judge_agreement"), help="per-design score cache")
    args = parser.parse_args()

    values = ValueSet.resolve(args.values)
    queries = load_labelled(args.labels, values, limit=args.limit)
    scores: dict[str, list] = {
        "response length": [{v: [float(len(r)) for r in q.responses] for v in values.names} for q in queries]
    }
    seconds: dict[str, float] = {"response length": 0.0}
    args.cache.mkdir(parents=True, exist_ok=True)
    for design in [*args.designs, *args.judges]:
        path = args.cache / f"{args.labels.stem}-{values.name}-{len(queries)}-{design.replace('/', '_')}.json"
        if path.exists():
            cached = json.loads(path.read_text())
            scores[design], seconds[design] = cached["scores"], cached["seconds"]
            continue
        started = time.perf_counter()
        scores[design] = collect_scores(_scorer(design, values, args.api_base, args.adapter), queries)
        seconds[design] = time.perf_counter() - started
        path.write_text(json.dumps({"scores": scores[design], "seconds": seconds[design]}))

    rows = []
    generative = [d for d in scores if d not in ("response length", "embedding")]
    variants: dict[str, tuple[list, float]] = {}
    for design, design_scores in scores.items():
        variants[design] = (design_scores, seconds[design])
        if design != "response length":
            variants[f"{design}, contrasted"] = (contrast_scores(design_scores), seconds[design])
    if len(generative) > 1:
        members = " + ".join(generative)
        plain = rank_ensemble([scores[d] for d in generative])
        variants[f"mean rank of {members}"] = (plain, sum(seconds[d] for d in generative))
        variants[f"mean rank of {members}, contrasted"] = (contrast_scores(plain), sum(seconds[d] for d in generative))
    half = len(queries) // 2
    halves = {}
    for name, (variant_scores, spent) in variants.items():
        report = agreement(variant_scores, queries, name=name)
        report.seconds = spent
        rows.append(report)
        first = agreement(variant_scores[:half], queries[:half]).overall.spearman or 0.0
        second = agreement(variant_scores[half:], queries[half:]).overall.spearman or 0.0
        halves[name] = f"{first:+.3f} | {second:+.3f}"
    responses = sum(len(q.responses) for q in queries)
    print(f"{args.labels.name}: {len(queries)} queries, {responses} responses, values {', '.join(values.names)}")
    table = agreement_table(rows).splitlines()
    print(f"{table[0]}   halves (Spearman)")
    for line, report in zip(table[1:], rows):
        print(f"{line}   {halves[report.name]}")
    print("\n".join(recital_lines(args.labels, variants, args.limit)))
    for report in rows[1:]:
        print(f"\n{report.name}, per value:")
        print("\n".join(report.per_value_lines()))


if __name__ == "__main__":
    main()
