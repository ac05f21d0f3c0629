"""The `picaco` command: errors are one line and exit 2; compile and evaluate run for real on the embedded model."""

import json
import subprocess
import sys

import dspy
import pytest

from picaco_dspy.cli import main
from picaco_dspy.cli.program_loader import load_program
from picaco_dspy.programs.assistant import Assistant


def small_compile(tmp_path, *extra):
    """A compile on 3 built-in prompts with the template proposer, writing to tmp_path/o."""
    return [
        "compile",
        "--values",
        "liberalism-4",
        "--prompts",
        "everyday-help",
        "--limit",
        "3",
        "--proposer",
        "template",
        *extra,
        "--out",
        str(tmp_path / "o"),
    ]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_values_list_and_show(capsys):
    code, out, _ = run(capsys, "values", "list")
    assert code == 0 and "liberalism-4" in out and "Universalism, Self-direction, Hedonism, Stimulation" in out
    code, out, _ = run(capsys, "values", "show", "harmlessness-4")
    assert code == 0 and "- Privacy:" in out and "Project-defined" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["values", "show", "stoicism"], "neither a built-in value set"),
        (["compile", "--values", "liberalism-4", "--prompts", "missing.jsonl", "--out", "x"], "does not exist"),
        (["compile", "--values", "nope-4", "--prompts", "everyday-help", "--out", "x"], "neither a built-in"),
        (
            ["compile", "--program", "nosuch", "--values", "liberalism-4", "--prompts", "everyday-help", "--out", "x"],
            "unknown program 'nosuch'",
        ),
        (
            ["compile", "--values", "liberalism-4", "--prompts", "everyday-help", "--target", "gpt4", "--out", "x"],
            "not a litellm model string",
        ),
        (
            [
                "compile",
                "--values",
                "liberalism-4",
                "--prompts",
                "everyday-help",
                "--val-fraction",
                "1.5",
                "--out",
                "x",
            ],
            "--val-fraction",
        ),
        (["demo", "--values", "stoicism-3"], "unknown built-in value set"),
        (
            ["compile", "--values", "liberalism-4", "--prompts", "everyday-help", "--limit", "0", "--out", "x"],
            "--limit",
        ),
        (["evaluate", "--values", "liberalism-4", "--prompts", "everyday-help", "--no-bare"], "nothing to evaluate"),
        (
            [
                "compile",
                "--values",
                "liberalism-4",
                "--prompts",
                "everyday-help",
                "--method",
                "OPRO",
                "--proposer",
                "template",
                "--out",
                "x",
            ],
            "needs an LM proposer",
        ),
        (
            ["compile", "--values", "liberalism-4", "--prompts", "everyday-help", "--budget", "0", "--out", "x"],
            "--budget",
        ),
        (
            [
                "compile",
                "--values",
                "liberalism-4",
                "--prompts",
                "everyday-help",
                "--method",
                "URIAL",
                "--auto",
                "light",
                "--out",
                "x",
            ],
            "--auto apply to PICACO only",
        ),
        (["worker", "--storage", "/nonexistent-folder/runs.db", "--run", "r"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("picaco: error:") and message in err
    assert "Traceback" not in err


def test_wrong_prompt_column_names_the_columns(capsys, tmp_path):
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text_body\n1,hello\n")
    code, _, err = run(capsys, "compile", "--values", "liberalism-4", "--prompts", str(prompts), "--out", "x")
    assert code == 2 and "['id', 'text_body']" in err


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(Exception, match="neither a built-in"):
        main(["--debug", "values", "show", "stoicism"])


def test_every_subcommand_has_help():
    for argv in (
        ["--help"],
        ["demo", "--help"],
        ["compile", "--help"],
        ["evaluate", "--help"],
        ["worker", "--help"],
        ["runs", "--help"],
        ["values", "--help"],
        ["values", "show", "--help"],
        ["judge-check", "--help"],
    ):
        done = subprocess.run([sys.executable, "-m", "picaco_dspy.cli", *argv], capture_output=True, text=True)
        assert done.returncode == 0 and "usage: picaco" in done.stdout


def test_load_program_by_name_path_and_attr(tmp_path):
    program, field = load_program("assistant")
    assert type(program).__name__ == "Assistant" and field == "query"
    program, field = load_program("advisor")
    assert field == "dilemma"
    source = tmp_path / "two.py"
    source.write_text(
        "import dspy\nclass A(dspy.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.p = dspy.Predict('x -> y')\n    def forward(self, x):\n        return self.p(x=x)\n"
        "class B(A):\n    pass\n"
    )
    with pytest.raises(Exception, match="defines 2 DSPy modules"):
        load_program(str(source))
    program, field = load_program(f"{source}:B")
    assert type(program).__name__ == "B" and field == "x"


@pytest.mark.embedded
def test_compile_then_evaluate_on_the_embedded_model(capsys, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps({"prompt": p})
            for p in [
                "What should I do this weekend?",
                "How can I make new friends?",
                "Any tips for a rainy afternoon?",
            ]
        )
    )
    out = tmp_path / "run"
    code, stdout, err = run(
        capsys,
        "compile",
        "--values",
        "liberalism-4",
        "--prompts",
        str(prompts),
        "--val-fraction",
        "0.34",
        "--iterations",
        "1",
        "--candidates",
        "2",
        "--aligned-pool",
        "1",
        "--noisy-pool",
        "1",
        "--noisy-samples",
        "1",
        "--samples",
        "1",
        "--proposer",
        "template",
        "--max-tokens",
        "24",
        "--no-progress",
        "--storage",
        str(tmp_path / "runs.db"),
        "--run",
        "cli-run",
        "--out",
        str(out),
    )
    assert code == 0, err
    assert "Per-value conformity on held-out prompts" in stdout and "seed" in stdout and "final" in stdout
    assert "Run 'cli-run'" in stdout and "picaco worker --storage <URL> --run cli-run" in stdout
    for name in ("program.json", "run.json", "pools.json", "report.md", "radar.png"):
        assert (out / name).is_file(), name
    assert (out / "radar.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run_log = json.loads((out / "run.json").read_text())
    assert run_log["finished"] and run_log["usage"]["proposer"]["calls"] == 0  # template proposer: no LM
    report = (out / "report.md").read_text()
    assert "| seed |" in report and "| final |" in report and "![per-value conformity](radar.png)" in report
    restored = Assistant()
    restored.load(str(out / "program.json"))
    assert run_log["final_instruction"] in restored.respond.signature.instructions

    # a worker joining the finished run rebuilds it from the stored arguments, pays nothing and ends on the same program
    code, stdout, err = run(
        capsys,
        "worker",
        "--storage",
        str(tmp_path / "runs.db"),
        "--run",
        "cli-run",
        "--out",
        str(tmp_path / "worker"),
        "--no-progress",
    )
    assert code == 0, err
    assert "This process paid 0 of them" in stdout
    worker_log = json.loads((tmp_path / "worker" / "run.json").read_text())
    assert worker_log["final_instruction"] == run_log["final_instruction"] and worker_log["executed_jobs"] == 0
    code, stdout, _ = run(capsys, "runs", "--storage", str(tmp_path / "runs.db"))
    assert code == 0 and stdout.startswith("cli-run  started")

    code, stdout, err = run(
        capsys,
        "evaluate",
        "--values",
        "liberalism-4",
        "--prompts",
        str(prompts),
        "--state",
        str(out / "program.json"),
        "--max-tokens",
        "24",
        "--no-progress",
        "--out",
        str(tmp_path / "eval"),
    )
    assert code == 0, err
    assert "| as given |" in stdout and f"| {out / 'program.json'} |" in stdout
    rows = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert [r["judged"] + r["failed"] for r in rows] == [3, 3]
    assert all(1 <= v <= 5 for r in rows for v in r["per_value"].values())

    baseline = tmp_path / "urial"
    code, stdout, err = run(
        capsys,
        "compile",
        "--method",
        "URIAL",
        "--values",
        "liberalism-4",
        "--prompts",
        str(prompts),
        "--val-fraction",
        "0.34",
        "--max-tokens",
        "24",
        "--no-progress",
        "--out",
        str(baseline),
    )
    assert code == 0, err
    assert "| Q+IF |" in stdout and "| URIAL |" in stdout
    assert json.loads((baseline / "run.json").read_text())["method"] == "URIAL"
    restored = Assistant()
    restored.load(str(baseline / "program.json"))
    assert "helpful, respectful and honest" in restored.respond.signature.instructions and restored.respond.demos


def test_cli_does_not_leave_dspy_settings_changed(capsys):
    before = dspy.settings.lm
    run(capsys, "values", "list")
    assert dspy.settings.lm is before


def test_worker_explains_runs_started_from_python_and_unknown_runs(capsys, tmp_path):
    from picaco_dspy.runtime.store import RunStore

    store = RunStore(f"sqlite:///{tmp_path / 'runs.db'}")
    store.open_run("from-python", "fingerprint")
    store.close()
    code, _, err = run(capsys, "worker", "--storage", str(tmp_path / "runs.db"), "--run", "from-python")
    assert code == 2 and "started from Python" in err and "same script" in err
    code, _, err = run(capsys, "worker", "--storage", str(tmp_path / "runs.db"), "--run", "missing")
    assert code == 2 and "No run named 'missing'" in err and "picaco runs" in err


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "import dspy\nclass Empty(dspy.Module):\n    def forward(self, query):\n        return query\n",
            "no predictors",
        ),
        (
            "import dspy\nclass NoText(dspy.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.p = dspy.Predict('query -> score: int')\n    def forward(self, query):\n"
            "        return self.p(query=query)\n",
            "text output",
        ),
        (
            "import dspy\nclass Broken(dspy.Module):\n    def __init__(self):\n"
            "        raise RuntimeError('no config')\n    def forward(self, query):\n        return query\n",
            "building the program failed: RuntimeError: no config",
        ),
        ("import sys\nsys.exit(0)\n", "calls sys.exit(0) when imported"),
    ],
)
def test_programs_that_cannot_be_aligned_are_named(capsys, tmp_path, source, message):
    program = tmp_path / "prog.py"
    program.write_text(source)
    code, _, err = run(capsys, *small_compile(tmp_path, "--program", str(program)))
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "gpt4"], "not a litellm model string"),
        (["--judge", "claude"], "not a litellm model string"),
        (["--budget-tokens", "0"], "--budget-tokens must be an integer between 1 and"),
        (["--budget-usd", "-2"], "--budget-usd must be"),
        (["--auto", "light", "--iterations", "0"], "--iterations must be an integer between 1 and"),
        (["--storage", "nosuchdb://x/y"], "dialect+driver"),
    ],
)
def test_bad_models_budgets_and_storage_exit_2(capsys, tmp_path, extra, message):
    code, _, err = run(capsys, *small_compile(tmp_path, *extra))
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compile"], "the following arguments are required"),
        (["compile", "--values", "x", "--prompts", "y", "--out", "z", "--iterations", "abc"], "invalid int value"),
        (["bogus"], "invalid choice"),
    ],
)
def test_argument_errors_are_one_line_with_a_hint(capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and message in err and "--help`" in err


def test_outputs_and_storage_that_cannot_work_are_named_before_any_model_runs(capsys, tmp_path):
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("my notes\n")
    a_file = tmp_path / "out.txt"
    a_file.write_text("x")
    base = ["compile", "--values", "liberalism-4", "--prompts", "everyday-help", "--limit", "3"]
    for extra, message in (
        (["--out", str(a_file)], "is a file"),
        (["--out", str(tmp_path / "o"), "--storage", str(not_a_db)], "is not an SQLite database"),
        (["--out", str(tmp_path / "o"), "--storage", str(tmp_path)], "is a folder"),
    ):
        code, _, err = run(capsys, *base, *extra)
        assert code == 2 and message in err and err.count("\n") == 1
    assert not_a_db.read_text() == "my notes\n" and not (tmp_path / "o").exists()


def test_an_unknown_reference_model_is_named_before_any_lm_call(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(capsys, *small_compile(tmp_path, "--reference", str(tmp_path / "no-such-model")))
    assert code == 2 and "is not a model folder" in err and err.count("\n") == 1
    code, _, err = run(capsys, *small_compile(tmp_path, "--reference", "nobody/no-such-model-xyz"))
    assert code == 2 and "reference model cannot be loaded" in err and err.count("\n") == 1  # a well-formed id
    assert not (tmp_path / "o").exists()


def two_value_labels(tmp_path):
    """A two-value set and a labelled file for it (two queries of two responses)."""
    labels = tmp_path / "labels.jsonl"
    rows = [
        {
            "prompt": "My friend forgot my birthday. What should I do?",
            "responses": [
                "Talk to them kindly; people forget, and your friendship matters more than one day.",
                "Cut them off. You owe nobody patience.",
            ],
            "labels": {"Universalism": [0.4, -0.3], "Self-direction": [0.1, 0.2]},
        },
        {
            "prompt": "Should I learn to paint at 50?",
            "responses": ["Yes, follow your curiosity and choose your own path.", "No, it is too late."],
            "labels": {"Universalism": [0.0, -0.1], "Self-direction": [0.5, -0.4]},
        },
    ]
    labels.write_text("\n".join(json.dumps(r) for r in rows))
    values = tmp_path / "values.json"
    values.write_text(
        json.dumps(
            {
                "name": "two",
                "values": [
                    {"name": "Universalism", "definition": "Concern for the welfare of all people."},
                    {"name": "Self-direction", "definition": "Independent thought and choice."},
                ],
            }
        )
    )
    return values, labels


def test_judge_check_prints_agreement_with_labels_next_to_a_length_baseline(capsys, tmp_path):
    values, labels = two_value_labels(tmp_path)
    code, out, err = run(capsys, "judge-check", "--values", str(values), "--labels", str(labels))
    assert code == 0, err
    assert "2 queries, 4 responses" in out and "response length (baseline)" in out and "judge local" in out
    assert "Universalism" in out and "pairwise" in out
    code, _, err = run(capsys, "judge-check", "--values", "liberalism-4", "--labels", str(labels))
    assert code == 2 and "no labels for" in err and "Hedonism" in err


def test_evaluate_says_under_the_table_how_far_the_judge_agrees_with_human_labels(capsys, tmp_path):
    values, labels = two_value_labels(tmp_path)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "How do I spend a free Sunday?"}) + "\n")
    argv = ["evaluate", "--values", str(values), "--prompts", str(prompts), "--max-tokens", "16"]
    code, out, err = run(capsys, *argv, "--agreement-labels", str(labels), "--out", str(tmp_path / "e"))
    assert code == 0, err
    note = out.split("Judge agreement:")[1]
    assert "judge local" in note and "Spearman" in note and ("chance" in note)
    assert "Judge agreement:" in (tmp_path / "e" / "evaluation.md").read_text()
    saved = json.loads((tmp_path / "e" / "judge_agreement.json").read_text())
    assert saved["judgements"] == 4 and saved["usage"]["calls"] == 8  # 4 responses x 2 values, yes/no each
    code, _, err = run(
        capsys, "evaluate", "--values", "liberalism-4", "--prompts", str(prompts), "--agreement-labels", str(labels)
    )
    assert code == 2 and "no labels for" in err  # the file is checked before any model is loaded or called
