"""Run reports: a Markdown summary and a per-value radar chart (PNG) of conformity before and after."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from picaco_dspy.optimize.result import PICACOResult


def radar_chart(series: Mapping[str, Mapping[str, float]], path: str | Path, *, title: str = "") -> Path:
    """Draw one polygon per series over the values (1-5 scale) and save it as PNG.

    Uses matplotlib's object API with the Agg canvas, so no global backend or style is changed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(next(iter(series.values())))
    angles = [2 * math.pi * k / len(names) for k in range(len(names))]
    figure = Figure(figsize=(5.5, 5.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(projection="polar")
    for label, scores in series.items():
        values = [scores[n] for n in names]
        axes.plot(angles + angles[:1], values + values[:1], linewidth=2, label=label)
        axes.fill(angles + angles[:1], values + values[:1], alpha=0.12)
    axes.set_xticks(angles)
    axes.set_xticklabels(names)
    axes.set_ylim(1, 5)
    axes.set_yticks([1, 2, 3, 4, 5])
    if title:
        axes.set_title(title, pad=18)
    axes.legend(loc="upper right", bbox_to_anchor=(1.25, 1.12))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    return path


def markdown_report(result: PICACOResult, *, chart: str | None = None) -> str:
    """A readable summary of a run: before/after conformity, J(e) per iteration, instructions, cost."""
    names = [v["name"] for v in result.values["values"]]
    lines = [f"# PICACO run: {result.values['name']}", ""]
    table = result.conformity_table()
    if table:
        lines += [
            "## Per-value conformity on held-out prompts (1-5, higher is better)",
            "",
            "| instruction | " + " | ".join(names) + " | mean |",
            "|---|" + "---|" * (len(names) + 1),
        ]
        for label, row in table.items():
            lines.append(
                f"| {label} | "
                + " | ".join(f"{row[n]:.2f}" for n in names)
                + f" | {sum(row.values()) / len(row):.2f} |"
            )
        lines.append("")
    if chart:
        lines += [f"![per-value conformity]({chart})", ""]
    lines += [
        "## Iterations",
        "",
        "J(e) is the likelihood-weighted reward of each prompt's pool; it compares the "
        "candidates of one iteration (pools grow between iterations).",
        "",
        "| iteration | J(e) | mean r of new responses | " + " | ".join(names) + " | failed |",
        "|---|---|---|" + "---|" * (len(names) + 1),
    ]
    for record in result.iterations:
        lines.append(
            f"| {record.iteration} | {record.J:.4f} | {record.mean_reward:.4f} | "
            + " | ".join(f"{record.conformity[n]:.2f}" for n in names)
            + f" | {record.failed_rollouts} |"
        )
    lines += [
        "",
        "## Instructions",
        "",
        "Seed:",
        "",
        _quote(result.seed_instruction),
        "",
        "Final:",
        "",
        _quote(result.final_instruction or ""),
        "",
    ]
    for record in result.iterations:
        lines += [f"Iteration {record.iteration} (J = {record.J:.4f}):", "", _quote(record.instruction), ""]
    lines += _candidates_section(result, names)
    lines += ["## Cost", "", "| role | calls | input tokens | output tokens |", "|---|---|---|---|"]
    for role, usage in result.usage.items():
        lines.append(f"| {role} | {usage['calls']} | {usage['input_tokens']} | {usage['output_tokens']} |")
    lines += [
        "",
        f"Wall time: {result.wall_seconds:.1f} s. Calls count what the engines served (cache hits are free "
        "and not counted); reference calls are sequences scored.",
        "",
    ]
    return "\n".join(lines)


def _candidates_section(result: PICACOResult, names: list[str]) -> list[str]:
    """The final candidates: per-value conformity, the Pareto front over the values, and where each came from."""
    if result.selection is None:
        return []
    front, lineage = result.value_front(), result.lineage()
    finalists = sorted(result.selection.scores, key=lambda t: -result.selection.scores[t])  # type: ignore[union-attr]
    label = {text: f"C{k + 1}" for k, text in enumerate(finalists)}
    lines = [
        "## Final candidates",
        "",
        f"Per-value conformity (1-5) from the {front.source}; * marks the best candidate for a value, "
        "front = not beaten on every value by another candidate. Lineage: iteration, how it was made, parent.",
        "",
        "| candidate | " + " | ".join(names) + " | front | chosen | lineage |",
        "|---|" + "---|" * (len(names) + 3),
    ]
    for text in finalists:
        scores = front.scores.get(text)
        cells = [
            (f"{scores[n]:.2f}" + ("*" if text in front.best_per_value.get(n, []) else "")) if scores else "-"
            for n in names
        ]
        origin = lineage.get(text)
        where = "-"
        if origin is not None:
            where = f"iteration {origin.iteration}, {origin.proposed_by or origin.origin}"
            if origin.parent is not None:
                where += f", from {label.get(origin.parent, 'an earlier instruction')}"
        lines.append(
            f"| {label[text]} | "
            + " | ".join(cells)
            + f" | {'yes' if text in front.non_dominated else ('-' if not scores else 'no')}"
            + f" | {'yes' if text == result.final_instruction else ''} | {where} |"
        )
    lines.append("")
    for text in finalists:
        lines += [f"{label[text]}:", "", _quote(text), ""]
    return lines


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
