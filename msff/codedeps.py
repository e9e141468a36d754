"""The msff source files a module runs, so a workflow rule can list them as inputs.

Snakemake reruns a job when its script changes, not when a module the script imports
does. Listing the transitive ``msff`` imports of a stage as inputs closes that gap:
editing ``msff/audio.py`` reruns the audio stages and their dependants, nothing else.
"""

from __future__ import annotations

import ast
from pathlib import Path


def _file(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_files(module: str, root: str | Path, package: str = "msff") -> list[str]:
    """Every source file of ``package`` that importing ``module`` executes, sorted.

    ``root`` is the folder that holds the package. Imports anywhere in a file count,
    including the lazy ones inside functions; parent packages' ``__init__.py`` count.
    """
    root = Path(root)
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        path = _file(name, root)
        if path is None or path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names if a.name.split(".")[0] == package)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] == package:
                    todo.append(node.module)
                    todo.extend(f"{node.module}.{a.name}" for a in node.names)
    return sorted(str(p) for p in seen)
