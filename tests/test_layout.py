"""The package's shape: stage folders whose imports only point down, and tools that import only what they use.

Read from the source (ast), not from a running interpreter, so a lazy import inside a function counts too.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bertcls"

# Lowest first. A module may import its own folder, the plumbing, and folders to its left; never one to its right.
STAGES = ["config", "data", "evaluation", "model", "training", "pretrain", "distill", "shipping"]
PLUMBING = {"errors", "logs", "files"}


def imports_of(path: Path) -> set[str]:
    """The bertcls modules a file imports, anywhere in it (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bertcls":
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "bertcls")
    return found


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def package_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        yield path, ".".join(rel.parts)


def test_every_module_lives_in_a_stage_folder_or_is_plumbing():
    top_level = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__", "cli"}
    assert top_level <= PLUMBING, f"modules outside the stage folders: {sorted(top_level - PLUMBING)}"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(STAGES), f"folders not in the stage order: {sorted(folders - set(STAGES))}"


def test_imports_only_point_down():
    upward = []
    for path, module in package_modules():
        stage = stage_of(module)
        if stage not in STAGES:
            continue
        for target in imports_of(path):
            target_stage = stage_of(target)
            if target_stage in STAGES and STAGES.index(target_stage) > STAGES.index(stage):
                upward.append(f"{module} imports {target}")
    assert not upward, "imports that point up the stages:\n" + "\n".join(sorted(set(upward)))


def test_plumbing_imports_no_stage():
    for name in PLUMBING:
        targets = {stage_of(t) for t in imports_of(PACKAGE / f"{name}.py")}
        assert not targets & set(STAGES), f"bertcls.{name} imports a stage: {targets & set(STAGES)}"


def test_every_command_is_a_module_with_main():
    from bertcls.cli import COMMANDS

    for name, (module, _) in COMMANDS.items():
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), f"{name}: {module}.main"


def test_cli_lists_commands_and_refuses_unknown_ones():
    listing = subprocess.run([sys.executable, "-m", "bertcls"], capture_output=True, text=True)
    assert listing.returncode == 0 and "predict" in listing.stdout and "pretrain" in listing.stdout
    typo = subprocess.run([sys.executable, "-m", "bertcls", "predcit"], capture_output=True, text=True)
    assert typo.returncode == 2 and "did you mean 'predict'" in typo.stderr and "Traceback" not in typo.stderr


@pytest.mark.parametrize("old, new", [("bertcls.pretrain", ["pretrain"])])
def test_old_module_form_of_pretrain_still_runs(old, new):
    """`python -m bertcls.pretrain` (the form before the bertcls command) answers --help like `bertcls pretrain`."""
    before = subprocess.run([sys.executable, "-m", old, "--help"], capture_output=True, text=True)
    after = subprocess.run([sys.executable, "-m", "bertcls", *new, "--help"], capture_output=True, text=True)
    assert before.returncode == after.returncode == 0
    assert "--whole_word_mask" in before.stdout
    assert before.stdout.split("options:")[1] == after.stdout.split("options:")[1]


def _commands():
    from bertcls.cli import COMMANDS

    return sorted(COMMANDS)


@pytest.mark.parametrize("name", _commands())
def test_every_command_prints_its_help(name, capsys):
    """`bertcls NAME --help` exits 0 and lists the tool's flags (argparse formats every help text with %: a bare
    percent sign in one of them made --help a traceback)."""
    from bertcls.cli import main

    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "--help" in out and out.count("\n  --") >= 2
