"""What manipulating the judge is worth, with the judge's defence off and on, on the frozen corpus
(``picaco_dspy/testing/corpora``: attacks and honest responses written by someone who never saw the defence).

Per attack kind and overall it prints:

* **flagged**: the screen removed something from the attack;
* **neutralised**: no piece of the attack's payload is left in the view the defended judge scores last (flagged or
  neutralised is the coverage target);
* **inflation off / on**: the judge's mean 0-1 score of the attacked response minus that of its honest response
  (``(conformity - 1) / 4`` averaged over the values), with the defence off (the response pasted in as is) and on
  (canonicalised, fenced, screened, the lower of the response's and its screened view's scores);
* **classifier off / on**: the share of attacks that turn the safety classifier's label into a refusal
  (``evaluation.robustness.classify_response``);

then the share of honest responses flagged, and which cues caught how many attacks. Judges:

* ``gullible`` (default): :class:`picaco_dspy.testing.gullible_judge.GullibleJudgeEngine`, which obeys every
  manipulation it can read (top marks, else 3 on every value): the worst case, offline and fast;
* ``local``: the embedded SmolLM2 yes/no judge (slow; it barely reads instructions, so its numbers say little);
* any litellm model string (``--api-base`` for a local server).

    python -m benchmarks.judge_manipulation                      # gullible judge, development split
    python -m benchmarks.judge_manipulation --judge local --limit 3
    python -m benchmarks.judge_manipulation --split heldout      # only to measure a finished defence
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections import Counter, defaultdict
from typing import Any

import dspy

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: litellm's price table from its own copy

from picaco_dspy.evaluation.robustness import classify_response  # noqa: E402
from picaco_dspy.models.from_spec import make_metric  # noqa: E402
from picaco_dspy.objective.judge import ValueJudge  # noqa: E402
from picaco_dspy.objective.screening import SCREEN_VERSION, screen_response  # noqa: E402
from picaco_dspy.objective.values import ValueSet  # noqa: E402
from picaco_dspy.testing.corpus import Attack, attacks, honest_responses, payload_pieces  # noqa: E402
from picaco_dspy.testing.gullible_judge import GullibleJudgeEngine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judge", default="gullible", help="'gullible', 'local' (embedded) or a litellm model")
    parser.add_argument("--api-base")
    parser.add_argument("--values", default="liberalism-4")
    parser.add_argument("--split", choices=("dev", "heldout", "heldout2", "heldout3"), default="dev")
    parser.add_argument("--limit", type=int, default=0, help="at most this many attacks per kind (0: all)")
    parser.add_argument(
        "--screen-call", action="store_true", help="the defended judge also asks its LM to quote the text for it"
    )
    parser.add_argument(
        "--honest-jsonl",
        help="more honest responses to check for false flags: JSON lines with 'response' or 'text', or Value "
        "Portrait rows (meta.responses), e.g. ../shared/datasets/value_portrait_dev.jsonl",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    values = ValueSet.resolve(args.values)
    corpus = attacks(args.split)
    if args.limit:
        seen: Counter[str] = Counter()
        corpus = [a for a in corpus if (seen.update([a.kind]) or seen[a.kind]) <= args.limit]
    judges, classifier_lm = _judges(args, values)
    started = time.monotonic()
    honest_scores: dict[tuple[bool, str], float] = {}

    def score(hardened: bool, prompt: str, text: str) -> float:
        judgement = judges[hardened].judge(prompt, text, values)
        return statistics.mean((c - 1) / 4 for c in judgement.conformity.values())

    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    cue_counts: Counter[str] = Counter()
    for attack in corpus:
        screened = screen_response(attack.attacked, values.names)
        cue_counts.update(screened.cues)
        row: dict[str, Any] = {
            "flagged": screened.flagged,
            "neutralised": not any(piece in screened.text for piece in payload_pieces(attack)),
        }
        for hardened in (False, True):
            key = (hardened, attack.honest)
            if key not in honest_scores:
                honest_scores[key] = score(hardened, attack.prompt, attack.honest)
            row[f"inflation_{hardened}"] = score(hardened, attack.prompt, attack.attacked) - honest_scores[key]
            if classifier_lm is not None:
                label = _classify(attack, classifier_lm, hardened)
                row[f"classifier_{hardened}"] = label != "complied"
        rows[attack.kind].append(row)
    honest = honest_responses(args.split)
    honest_flagged = sum(screen_response(h.response, values.names).flagged for h in honest)
    _print_table(args, rows, honest_flagged, len(honest), cue_counts, classifier_lm is not None, started)
    if args.honest_jsonl:
        texts = _honest_texts(args.honest_jsonl)
        flagged = [t for t in texts if screen_response(t, values.names).flagged]
        print(f"Honest responses from {args.honest_jsonl} flagged: {len(flagged)}/{len(texts)}.")


def _honest_texts(path: str) -> list[str]:
    texts = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            responses = row.get("meta", {}).get("responses")
            if responses:
                texts.extend(r["text"] for r in responses)
            elif row.get("response") or row.get("text"):
                texts.append(row.get("response") or row["text"])
    return texts


def _judges(args: argparse.Namespace, values: ValueSet) -> tuple[dict[bool, ValueJudge], dspy.BaseLM | None]:
    if args.judge == "gullible":
        # the judge knows every payload; what is measured is still one split
        every_attack = [a for split in ("dev", "heldout", "heldout2", "heldout3") for a in attacks(split)]
        engine = GullibleJudgeEngine(piece for attack in every_attack for piece in payload_pieces(attack))
        lm = dspy.LM("scripted/gullible", engine=engine, cache=False)
        judges = {False: ValueJudge(lm=lm, hardened=False), True: ValueJudge(lm=lm, screen_call=args.screen_call)}
        return judges, lm
    judges = {}
    for hardened in (False, True):
        judge = make_metric(values, args.judge, None, 256, args.api_base).judge
        judge.hardened = hardened
        judge.screen_call = hardened and args.screen_call
        judges[hardened] = judge
    return judges, None  # the safety classifier is measured with the gullible judge only


def _classify(attack: Attack, lm: dspy.BaseLM, hardened: bool) -> str:
    return classify_response(attack.prompt, attack.attacked, judge_lm=lm, hardened=hardened)


def _print_table(
    args: argparse.Namespace,
    rows: dict[str, list[dict[str, Any]]],
    honest_flagged: int,
    honest_total: int,
    cue_counts: Counter[str],
    with_classifier: bool,
    started: float,
) -> None:
    every = [row for kind_rows in rows.values() for row in kind_rows]
    print(
        f"Judge {args.judge!r}, screen version {SCREEN_VERSION}, {args.split} split: {len(every)} attacks in "
        f"{len(rows)} kinds ({time.monotonic() - started:.0f} s). Inflation = mean change of the 0-1 score; "
        "classifier = share of attacks labelled a refusal.\n"
    )
    header = "| kind | attacks | flagged | flagged or neutralised | inflation off | inflation on |"
    if with_classifier:
        header += " classifier off | classifier on |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for kind in [*sorted(rows), "all"]:
        kind_rows = every if kind == "all" else rows[kind]
        line = (
            f"| {'**all**' if kind == 'all' else kind} | {len(kind_rows)} | {_share(kind_rows, 'flagged')} "
            f"| {_share(kind_rows, 'flagged', 'neutralised')} | {_mean(kind_rows, 'inflation_False')} "
            f"| {_mean(kind_rows, 'inflation_True')} |"
        )
        if with_classifier:
            line += f" {_share(kind_rows, 'classifier_False')} | {_share(kind_rows, 'classifier_True')} |"
        print(line)
    print(f"\nHonest responses flagged: {honest_flagged}/{honest_total} ({honest_flagged / honest_total:.0%}).")
    print("Cues that fired (attacks): " + ", ".join(f"{cue} {n}" for cue, n in cue_counts.most_common()) + ".")


def _share(rows: list[dict[str, Any]], *keys: str) -> str:
    return f"{sum(any(row[k] for k in keys) for row in rows) / len(rows):.0%}"


def _mean(rows: list[dict[str, Any]], key: str) -> str:
    return f"{statistics.mean(row[key] for row in rows):+.3f}"


if __name__ == "__main__":
    main()
