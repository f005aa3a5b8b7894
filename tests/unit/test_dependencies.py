"""Every third-party module the package imports is a dependency pyproject.toml declares: a clean
install (pip, pipx) gets only those, whatever this machine's Python happens to have."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the package files that import it (relative imports and our own aside)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "harness").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "harness" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_distribution_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {normalized(re.split(r"[<>=!~\[;\s]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    imports = third_party_imports()
    assert {"docker", "yaml", "tabulate"} <= set(imports)  # the scan sees imports at all
    undeclared = {}
    for module, files in sorted(imports.items()):
        dists = {normalized(d) for d in providers.get(module, [])}
        if not dists & declared:
            undeclared[module] = (sorted(dists) or ["not installed"], sorted(files))
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
