"""The import rule of the code map (README, "Code map"): no module imports from a layer above its own.

Layers, bottom to top: the foundation (``common/``), the stage libraries
(``data_tools/``, ``degradation/``, ``sr/``, ``joint/``, ``tools/``: a data
tool or a tool is a library function with a thin command line at the
bottom), the training loops (``*/train.py``), the programs (the commands
built around a loop or a pipeline, ``benchmarks/``, the top-level scripts).
Libraries may import each other; a loop or a program imports only from
layers below it, so no command's internals are used as a library. Lazy
imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "data_tools", "degradation", "sr", "joint", "tools", "benchmarks")
LOOPS = {"degradation.train", "sr.train", "joint.train"}
PROGRAMS = {"degradation.synthesize", "degradation.fidelity", "sr.infer", "evaluate", "train_joint"}
LAYER_NAMES = ("foundation", "stage library", "training loop", "program")


def layer(module: str) -> int:
    if module.startswith("common."):
        return 0
    if module in LOOPS:
        return 2
    if module in PROGRAMS or module.startswith("benchmarks."):
        return 3
    return 1


def project_modules() -> dict[str, Path]:
    paths = [ROOT / "evaluate.py", ROOT / "train_joint.py"]
    for package in PACKAGES:
        paths += sorted((ROOT / package).glob("*.py"))
    return {".".join(path.relative_to(ROOT).with_suffix("").parts): path for path in paths}


def import_names(path: Path) -> list[str]:
    """Every module (and ``module.name``) that ``path`` imports, lazy imports included."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports, by their names in the repository (``unpaired_sr.`` taken off)."""
    return {name.removeprefix("unpaired_sr.") for name in import_names(path)} & known


def test_the_layer_rule_covers_every_module():
    modules = project_modules()
    assert {"common.config", "degradation.flow", "sr.train", "tools.export", "evaluate"} <= set(modules)
    assert [layer(m) for m in ("common.files", "tools.export", "joint.train", "sr.infer")] == [0, 1, 2, 3]


def test_no_module_imports_from_a_layer_above_its_own():
    modules = project_modules()
    known = set(modules)
    upward = []
    for module, path in modules.items():
        for target in imported_modules(path, known) - {module}:
            # Below, or beside among the foundation and the libraries.
            if layer(target) > layer(module) or (layer(target) == layer(module) >= 2):
                upward.append(
                    f"{module} ({LAYER_NAMES[layer(module)]}) imports {target} ({LAYER_NAMES[layer(target)]})"
                )
    assert upward == []


def test_the_checker_sees_an_upward_import(tmp_path):
    path = tmp_path / "upward.py"
    lines = ["def f():", "    from unpaired_sr.sr.train import train", "    from unpaired_sr.common.files import x"]
    path.write_text("\n".join(lines) + "\n")
    assert imported_modules(path, set(project_modules())) == {"sr.train", "common.files"}


def test_every_project_import_goes_through_the_package():
    # An installed copy has no top-level ``common`` or ``sr``: ``from sr.x import y`` would work in a
    # checkout and fail there. Tests and benchmarks are held to it too (they run against both).
    top_level = {package.split(".")[0] for package in PACKAGES if package != "benchmarks"} | {"evaluate", "train_joint"}
    bare = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted(ROOT.glob("**/*.py"))
        if ".venv" not in path.parts and "unpaired_sr" not in path.parts
        for name in import_names(path)
        if name.split(".")[0] in top_level
    ]
    assert bare == []
