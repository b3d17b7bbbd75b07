"""dvc.yaml against the code: each stage's deps list exactly the Python files its command runs
(the stage script and every `wm` module it imports, directly or through other modules), so
an edit anywhere in them makes `dvc status` call the stage's outputs stale."""

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# each stage's definition; a `foreach` stage's (the rounds of params iterate.rounds) as its round 1's
STAGES = {
    name: stage["do"] if "foreach" in stage else stage
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items()
}


def module_file(name):
    """'wm.rollout' -> Path('wm/rollout.py') (relative to the repo), or None if not ours."""
    path = Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def imported_files(path):
    """The project files that the Python file `path` imports anywhere in it (also inside
    functions), one level deep."""
    found = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from wm import paths` imports the module wm.paths; `from wm.env import X` wm.env
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("wm", "stages", "tools"):
                file = module_file(name)
                if file is not None and file.name != "__init__.py":
                    found.add(file)
    return found


def python_files_run_by(cmd):
    """The stage script of `python -m stages.<name> [args]` and every project module it
    reaches through imports. Package __init__ files are left out: wm's is empty and stages'
    only checks that the packages are installed, neither shapes an output."""
    match = re.fullmatch(r"python -m (stages\.\w+)( \w+)*", cmd)
    assert match, f"unexpected stage command {cmd!r}"
    start = module_file(match.group(1))
    seen, todo = {start}, [start]
    while todo:
        for file in imported_files(todo.pop()) - seen:
            seen.add(file)
            todo.append(file)
    return {str(file) for file in seen}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_list_exactly_the_code_it_runs(stage):
    listed = {dep for dep in STAGES[stage]["deps"] if dep.endswith(".py")}
    runs = python_files_run_by(STAGES[stage]["cmd"].replace("${key}", "1"))
    assert not runs - listed, f"{stage}: deps miss {sorted(runs - listed)}"
    assert not listed - runs, f"{stage}: deps list code it does not run: {sorted(listed - runs)}"
    missing = [
        dep
        for dep in STAGES[stage]["deps"]
        if not (ROOT / dep).exists() and "/" in dep and not dep.startswith(("data/", "models/", "${"))
    ]
    assert not missing, f"{stage}: deps that do not exist: {missing}"


def test_the_import_walk_sees_imports_inside_functions():
    # wm.io imports torch inside its functions; wm.ppo imports wm.env at the top
    assert Path("wm/env.py") in imported_files(Path("wm/ppo.py"))
    assert "wm/errors.py" in python_files_run_by("python -m stages.ppo baseline")
