"""The toolkit as one package: ``unpaired_sr.common``, ``unpaired_sr.degradation``, ``unpaired_sr.sr``, ...

The repository keeps its stages as top-level folders (``common/``, ``data_tools/``,
``degradation/``, ``sr/``, ``joint/``, ``tools/``) and programs (``evaluate.py``,
``train_joint.py``). Installed, they live inside this package (``pyproject.toml``
maps them there), so no generic top-level name such as ``common`` or ``evaluate``
reaches site-packages. In a checkout this folder holds only this file, and the
package's path is the repository root: the same imports work in both, and
``python -m sr.infer`` runs from the root as before.
"""

from pathlib import Path

_checkout = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "common").is_dir() and (_checkout / "common" / "__init__.py").is_file():
    __path__.append(str(_checkout))
