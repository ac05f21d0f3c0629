"""What a resume saves: a `picaco compile` killed halfway, started again, against the same run uninterrupted.

Three runs of the same command on the embedded model, each in a fresh process with an empty DSPy cache (so only the run
storage can spare a call): (1) uninterrupted; (2) SIGKILLed once its storage holds half of (1)'s paid calls; (3) the
same command again, which resumes (2). Prints the calls each paid, the calls the resume did not pay again, and whether
(3) ended on the same program as (1). Run from the repository root:

    python -m benchmarks.resume_savings --out runs/resume
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROLES = ("target", "judge", "proposer")


def compile_command(storage: Path, out: Path, prompts: Path) -> list[str]:
    return [
        str(Path(sys.executable).parent / "picaco"),
        "compile",
        "--values",
        "liberalism-4",
        "--prompts",
        str(prompts),
        "--val-fraction",
        "0.25",
        "--iterations",
        "3",
        "--candidates",
        "2",
        "--aligned-pool",
        "2",
        "--noisy-pool",
        "1",
        "--noisy-samples",
        "2",
        "--samples",
        "2",
        "--proposer",
        "template",
        "--max-tokens",
        "32",
        "--no-progress",
        "--storage",
        str(storage),
        "--run",
        "resume-benchmark",
        "--out",
        str(out),
    ]


def paid_calls(storage: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{storage}")
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT COALESCE(SUM(calls), 0) FROM picaco_results "
                        "WHERE role IN ('target', 'judge', 'proposer')"
                    )
                ).scalar()
            )
    except sa.exc.OperationalError:  # tables not created yet
        return 0
    finally:
        engine.dispose()


def fresh_env() -> dict[str, str]:
    return {**os.environ, "DSPY_CACHEDIR": tempfile.mkdtemp(prefix="picaco-bench-cache-")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/resume"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    prompts = args.out / "prompts.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps({"prompt": p})
            for p in (
                "What should I do this weekend?",
                "How can I make new friends?",
                "Any tips for a rainy afternoon?",
                "How do I start learning to cook?",
            )
        ),
        encoding="utf-8",
    )

    started = time.monotonic()
    whole = args.out / "uninterrupted"
    subprocess.run(
        compile_command(args.out / "uninterrupted.db", whole, prompts),
        env=fresh_env(),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    uninterrupted = json.loads((whole / "run.json").read_text())
    total = sum(uninterrupted["usage"][r]["calls"] for r in ROLES)
    whole_seconds = time.monotonic() - started

    storage = args.out / "resumed.db"
    killed = subprocess.Popen(
        compile_command(storage, args.out / "killed", prompts),
        env=fresh_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while killed.poll() is None and paid_calls(storage) < total // 2:
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    before_kill = paid_calls(storage)

    started = time.monotonic()
    subprocess.run(
        compile_command(storage, args.out / "resumed", prompts), env=fresh_env(), check=True, stdout=subprocess.DEVNULL
    )
    resumed = json.loads((args.out / "resumed" / "run.json").read_text())
    resume_paid = sum(resumed["worker_usage"][r]["calls"] for r in ROLES)
    resume_seconds = time.monotonic() - started

    print(f"uninterrupted run: {total} LM calls ({whole_seconds:.0f} s)")
    print(f"killed run: stored {before_kill} paid calls before SIGKILL")
    print(
        f"resume: paid {resume_paid} calls ({resume_seconds:.0f} s), reused {resumed['reused_results']} stored "
        f"results; killed + resume = {before_kill + resume_paid} calls"
    )
    print(
        f"calls saved by resuming instead of restarting: {total - resume_paid} of {total} "
        f"({(total - resume_paid) / total:.0%}); paid twice: {before_kill + resume_paid - total}"
    )
    print(
        f"same final program as the uninterrupted run: "
        f"{resumed['final_instruction'] == uninterrupted['final_instruction']}"
    )


if __name__ == "__main__":
    main()
