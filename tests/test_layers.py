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


def imported_modules(path: Path, known: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


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
    path.write_text("def f():\n    from sr.train import train\n    from common.files import atomic_write_bytes\n")
    assert imported_modules(path, set(project_modules())) == {"sr.train", "common.files"}
