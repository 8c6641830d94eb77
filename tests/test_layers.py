"""The package's layers: each module imports only from its own layer or the ones below.

Data flows up: files -> spectra -> model -> store (data) -> training and analysis (peers)
-> workflows and commands. A
module that reached upwards (the store importing the trainer, the model importing the
analysis) would make the lower layer unusable without the upper one and is the first step
towards an import cycle. Imports inside functions count too: they are dependencies all
the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "specray"

LAYERS: list[tuple[str, ...]] = [
    ("specray.errors",),
    (
        "specray.storage", "specray.runtime", "specray.progress", "specray.locks",
        "specray.placeholders", "specray.spectra", "specray.records",
    ),
    ("specray.model",),
    ("specray.schema", "specray.config"),
    ("specray.data",),
    ("specray.train", "specray.analysis"),
    ("specray.workflows", "specray.api", "specray.cli", "specray"),
]  # fmt: skip
"""Lowest first. A module belongs to the longest prefix listed."""


def layer_of(module: str) -> int:
    matches = [
        (len(prefix), level)
        for level, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    if not matches:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return max(matches)[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def specray_imports(path: Path) -> set[str]:
    """Every specray module ``path`` imports, at any depth (``from specray import x`` is
    ``specray.x`` when x is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "specray"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "specray":
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py")
                is_package = PACKAGE.parent / Path(*candidate.split(".")) / "__init__.py"
                found.add(candidate if is_module.exists() or is_package.exists() else node.module)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_from_a_layer_above_its_own(path):
    here = module_name(path)
    upward = [
        imported for imported in sorted(specray_imports(path))
        if layer_of(imported) > layer_of(here)
    ]  # fmt: skip
    assert not upward, f"{here} (layer {layer_of(here)}) imports {upward} from above"


PEERS = ("specray.train", "specray.analysis")
"""One layer, two peers that never import each other: what both need (checkpoints, the
live-node rule) lives in specray.model."""

PURE = ("specray.spectra", "specray.model", "specray.analysis.mi", "specray.analysis.cmi")
"""Science without Ray: importable, and testable, with numpy, scipy, astropy and torch only."""


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_training_and_analysis_do_not_import_each_other(path):
    here = module_name(path)
    for peer, other in (PEERS, PEERS[::-1]):
        if here.startswith(peer + "."):
            crossing = [m for m in specray_imports(path) if m.startswith(other)]
            assert not crossing, f"{here} imports {crossing}: move what both need below them"


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if module_name(p).startswith(PURE)],
    ids=lambda p: module_name(p),
)
def test_the_science_modules_do_not_use_ray(path):
    tree = ast.parse(path.read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.split(".")[0] == "ray"], module_name(path)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    # The rule must be able to fail: a store module importing the trainer is caught.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from specray import schema\n"
        "def later():\n    from specray.train import trainer\n    import specray.analysis.report\n"
    )
    imported = specray_imports(probe)
    assert imported == {"specray.schema", "specray.train.trainer", "specray.analysis.report"}
    store_layer = layer_of("specray.data.store")
    assert sorted(m for m in imported if layer_of(m) > store_layer) == [
        "specray.analysis.report",
        "specray.train.trainer",
    ]
