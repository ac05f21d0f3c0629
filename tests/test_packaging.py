"""The package as users get it: a small public API, docs whose imports resolve, the example programs shipped in the
wheel (identical to the readable copies), and the installed wheel working from an empty folder."""

import importlib
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import picaco_dspy

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ["objective", "optimize", "runtime", "observe", "models", "evaluation", "baselines", "prompts", "cli"]


def test_public_api_is_small_and_every_name_resolves():
    assert len(picaco_dspy.__all__) <= 21
    for name in picaco_dspy.__all__:
        assert getattr(picaco_dspy, name) is not None
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"picaco_dspy.{sub}")
        for name in getattr(module, "__all__", []):
            assert hasattr(module, name), f"picaco_dspy.{sub}.__all__ lists {name!r}, which it does not define"


def test_version_is_single_sourced_from_the_package_metadata():
    pyproject = (ROOT / "pyproject.toml").read_text()
    declared = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE).group(1)
    assert picaco_dspy.__version__ == declared
    assert declared not in (ROOT / "picaco_dspy" / "__init__.py").read_text()


def test_every_import_shown_in_the_docs_resolves():
    pattern = re.compile(r"^\s*from (picaco_dspy[\w.]*) import \(?([\w, \n]+?)\)?$", re.MULTILINE)
    checked = 0
    for doc in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for module_name, names in pattern.findall(doc.read_text()):
            module = importlib.import_module(module_name)
            for name in (n.strip() for n in names.replace("\n", " ").split(",")):
                if name:
                    assert hasattr(module, name), f"{doc.name}: {module_name} has no {name}"
                    checked += 1
    assert checked >= 10


def test_shipped_example_programs_are_identical_to_the_readable_copies():
    shipped = {p.name: p.read_bytes() for p in (ROOT / "picaco_dspy" / "programs").glob("*.py") if p.stem != "__init__"}
    readable = {p.name: p.read_bytes() for p in (ROOT / "programs").glob("*.py") if p.stem != "__init__"}
    assert shipped and shipped == readable, "edit picaco_dspy/programs/ and copy the file to programs/ (or back)"


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """The package built as a wheel and installed (no dependencies) into a fresh virtual environment that borrows
    this environment's dependencies, so that it runs offline."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(work)],
        check=True,
        capture_output=True,
    )
    wheel = next(work.glob("picaco_dspy-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)  # a wheel is a zip of the install layout; entry points are written below
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = venv / "bin" / "picaco"
    script.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom picaco_dspy.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    empty = work / "empty"
    empty.mkdir()
    return wheel, venv, empty


def test_wheel_ships_data_files_programs_and_type_marker(installed_wheel):
    wheel, _, _ = installed_wheel
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in [
        "picaco_dspy/py.typed",
        "picaco_dspy/objective/value_sets/liberalism-4.yaml",
        "picaco_dspy/prompts/prompt_sets/everyday-help.jsonl",
        "picaco_dspy/programs/assistant.py",
        "picaco_dspy/cli/commands/demo.py",
        "picaco_dspy/testing/corpora/attacks_heldout.jsonl",
    ]:
        assert required in names, f"{required} is missing from the wheel"


def test_installed_wheel_finds_shipped_programs_from_an_empty_folder(installed_wheel):
    _, venv, empty = installed_wheel
    code = (
        "import picaco_dspy, sys; from picaco_dspy.cli.program_loader import load_program;"
        "program, field = load_program('assistant'); "
        "assert 'site-packages' in picaco_dspy.__file__, picaco_dspy.__file__; print(type(program).__name__, field)"
    )
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=empty, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["Assistant", "query"]
    done = subprocess.run([str(venv / "bin" / "picaco"), "values", "list"], cwd=empty, capture_output=True, text=True)
    assert done.returncode == 0 and "liberalism-4" in done.stdout


@pytest.mark.embedded
def test_installed_wheel_runs_the_demo_from_an_empty_folder(installed_wheel):
    _, venv, empty = installed_wheel
    done = subprocess.run(
        [str(venv / "bin" / "picaco"), "demo", "--iterations", "1", "--train", "2", "--val", "1", "--no-progress"],
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Final instruction:" in done.stdout
    assert (empty / "runs" / "demo" / "program.json").is_file() and (empty / "runs" / "demo" / "report.md").is_file()
