"""``picaco compile --method <baseline>``: run a baseline on the same models and budget, then judge it and the
plain value instruction (Q+IF) on the held-out prompts."""

from __future__ import annotations

from pathlib import Path

import dspy

from picaco_dspy.baselines.fixed import value_instruction_program
from picaco_dspy.baselines.harness import MethodContext, run_method
from picaco_dspy.cli.errors import CliError
from picaco_dspy.cli.program_loader import load_program, preflight
from picaco_dspy.cli.settings import CompileSettings
from picaco_dspy.evaluation.evaluate import comparison_table, evaluate_program
from picaco_dspy.evaluation.report import radar_chart
from picaco_dspy.models.from_spec import make_target
from picaco_dspy.objective.values import ValueSet
from picaco_dspy.optimize.result import write_json
from picaco_dspy.prompts.loading import to_examples


def compile_baseline(settings: CompileSettings, train: list[str], val: list[str]) -> int:
    """Run a baseline method, then judge it and the plain value instruction (Q+IF) on the held-out prompts."""

    if settings.proposer == "template" and settings.method in ("OPRO", "COPRO", "MIPROv2", "GEPA"):
        raise CliError(f"--method {settings.method} needs an LM proposer; --proposer template works with PICACO only")
    values = ValueSet.resolve(settings.values)
    program, input_field = load_program(settings.program)
    target, adapter, metric = settings.models(values)
    proposer = make_target(settings.proposer, 200, settings.api_base)[0].copy(temperature=1.0)
    trainset, valset = to_examples(train, input_field), to_examples(val, input_field)
    context = MethodContext(
        student=program,
        trainset=trainset,
        valset=valset,
        metric=metric,
        target_lm=target,
        judge_lm=metric.judge.lm or target,
        prompt_model=proposer,
        max_lm_calls=settings.picaco.max_lm_calls or 10**9,
        adapter=adapter,
        num_threads=settings.picaco.num_threads,
        seed=settings.picaco.seed,
        progress=settings.picaco.progress,
    )
    with dspy.context(lm=target, adapter=adapter):
        preflight(program, trainset[0], metric)
    run = run_method(settings.method, context)
    if run.error or run.program is None:
        raise CliError(f"{settings.method} failed: {run.error or 'no program'}")
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    run.program.save(str(out / "program.json"))
    write_json(
        out / "run.json",
        {
            "method": run.method,
            "usage": run.usage,
            "wall_seconds": run.wall_seconds,
            "budget_stopped": run.budget_stopped,
            "instructions": run.instructions,
        },
    )
    with dspy.context(lm=target, adapter=adapter):
        evaluations = [
            evaluate_program(
                value_instruction_program(program, values),
                valset,
                metric,
                label="Q+IF",
                num_threads=settings.picaco.num_threads,
                progress=settings.picaco.progress,
            ),
            evaluate_program(
                run.program,
                valset,
                metric,
                label=settings.method,
                num_threads=settings.picaco.num_threads,
                progress=settings.picaco.progress,
            ),
        ]
    table = comparison_table(evaluations)
    chart = radar_chart({e.label: e.per_value for e in evaluations}, out / "radar.png", title=values.name)
    calls = ", ".join(f"{role} {u['calls']}" for role, u in run.usage.items() if role != "reference")
    (out / "report.md").write_text(
        f"# {settings.method} run: {values.name}\n\n{table}\n\n![radar](radar.png)\n\n"
        f"Optimisation calls: {calls}; {run.wall_seconds:.0f} s"
        f"{' (budget reached)' if run.budget_stopped else ''}.\n",
        encoding="utf-8",
    )
    print(table)
    print(
        f"\nOptimisation calls: {calls}. Wrote {out / 'program.json'}, {out / 'run.json'}, {out / 'report.md'}, {chart}"
    )
    return 0
