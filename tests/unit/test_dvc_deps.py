"""dvc.yaml lists, for every stage, all the code that writes the stage's outputs.

The code a stage runs is derived from the imports, with :mod:`ast`: the stage's command
``curvewatch <stage>`` is the Typer command of that name in ``pipelines/cli.py``; in the two hub
modules (``cli.py`` and ``steps.py``, which hold one function per stage) only the functions reachable
from that command count, everywhere else a module counts whole, with every ``pipelines`` module it
imports (at module level or inside a function, but not under ``TYPE_CHECKING``), transitively.
A dependency is covered when ``dvc.yaml`` lists the file itself or a folder holding it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "pipelines"
HUBS = ("pipelines.cli", "pipelines.steps")


def _module_file(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _walk(node: ast.AST):
    """``ast.walk`` that does not enter ``if TYPE_CHECKING:`` blocks (never executed)."""
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        todo.extend(child for child in ast.iter_child_nodes(current) if not _is_type_checking(child))


def _imports(node: ast.AST, root: Path) -> list[tuple[str, set[str]]]:
    """``(module, names imported from it)`` for every ``pipelines`` import under ``node``."""
    found: list[tuple[str, set[str]]] = []
    for child in _walk(node):
        if isinstance(child, ast.Import):
            found += [(a.name, set()) for a in child.names if a.name.split(".")[0] == PACKAGE]
        elif isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == PACKAGE:
            names = {a.name for a in child.names}
            # `from pipelines import tracking` imports a module; `from pipelines.steps import run_x` a name.
            submodules = {n for n in names if _module_file(f"{child.module}.{n}", root)}
            found.append((child.module, names - submodules))
            found += [(f"{child.module}.{n}", set()) for n in submodules]
    return found


def _with_parents(module: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a/__init__``, ``a/b/__init__`` and ``a/b/c``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def code_deps(command: str, root: Path = REPO) -> set[Path]:
    """Files (relative to ``root``) that ``curvewatch <command>`` executes from the package."""
    trees: dict[str, ast.Module] = {}

    def tree(module: str) -> ast.Module:
        if module not in trees:
            trees[module] = ast.parse(_module_file(module, root).read_text())
        return trees[module]

    files: set[Path] = set()
    whole_done: set[str] = set()
    hub_done: set[tuple[str, str]] = set()
    todo: list[tuple[str, set[str]]] = [("pipelines.cli", {command})]
    while todo:
        module, names = todo.pop()
        for mod in _with_parents(module):
            path = _module_file(mod, root)
            if path is None:
                continue
            files.add(path.relative_to(root))
            if mod in HUBS:
                top = tree(mod)
                defs = {d.name: d for d in top.body if isinstance(d, ast.FunctionDef | ast.ClassDef)}
                # Module-level statements (imports, constants) always run on import.
                for stmt in top.body:
                    if not isinstance(stmt, ast.FunctionDef | ast.ClassDef):
                        todo += _imports(stmt, root)
                wanted = list(names) if mod == module else []
                while wanted:
                    name = wanted.pop()
                    if (mod, name) in hub_done or name not in defs:
                        continue
                    hub_done.add((mod, name))
                    todo += _imports(defs[name], root)
                    wanted += [n.id for n in _walk(defs[name]) if isinstance(n, ast.Name) and n.id in defs]
            elif mod not in whole_done:
                whole_done.add(mod)
                todo += _imports(tree(mod), root)
    return {f for f in files if (root / f).read_text().strip()}  # empty __init__.py runs nothing


def uncovered(required: set[Path], listed: list[str]) -> set[Path]:
    """The required files that no ``dvc.yaml`` dep (a file, or a folder holding it) covers."""
    listed_paths = [Path(d) for d in listed]
    return {f for f in required if not any(f == d or d in f.parents for d in listed_paths)}


def _stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_lists_all_code_it_runs(stage: str) -> None:
    spec = _stages()[stage]
    assert spec["cmd"] == f"curvewatch {stage}", "the derivation follows `curvewatch <stage>` commands"
    required = code_deps(stage)
    assert Path("pipelines/steps.py") in required and Path("pipelines/cli.py") in required
    missing = uncovered(required, spec.get("deps", []))
    assert not missing, f"dvc.yaml stage {stage!r} misses code deps: {sorted(map(str, missing))}"


def test_listed_code_deps_exist() -> None:
    for name, spec in _stages().items():
        for dep in spec.get("deps", []):
            if dep.startswith(f"{PACKAGE}/"):
                assert (REPO / dep).exists(), f"dvc.yaml stage {name!r}: {dep} does not exist"


def test_derivation_follows_function_level_imports_and_catches_an_omission() -> None:
    train = code_deps("train")
    # run_train imports these inside its body; the fetch command never reaches them.
    assert {Path("pipelines/tracking.py"), Path("pipelines/train.py")} <= train
    assert Path("pipelines/train.py") not in code_deps("fetch")
    # Imported only under TYPE_CHECKING or by other stages' functions: not a dep of fetch.
    assert Path("pipelines/evaluate.py") not in code_deps("fetch")
    listed = [d for d in _stages()["compare"]["deps"] if d != "pipelines/steps.py"]
    assert uncovered(code_deps("compare"), listed) == {Path("pipelines/steps.py")}


def test_image_plots_name_the_files_the_stages_write() -> None:
    """``dvc.yaml``'s image plots repeat two file names that the code declares (a YAML file cannot
    import them): each must be the name its writer uses, in the folder it writes to."""
    from pipelines.curves.report import PNG_NAME
    from pipelines.evaluate import EVALUATION_FILES

    written = {
        "${paths.compare_dir}/" + PNG_NAME,  # steps.run_compare writes the report there
        *("${paths.evaluation_dir}/" + name for name in EVALUATION_FILES if name.endswith(".png")),
    }
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    images = {p for p in plots if isinstance(p, str) and p.endswith(".png")}
    assert images == written
