"""Who may import whom (ARCHITECTURE.md): the kernels import nothing of the model layer, and the
model layer reaches a backend's kernel modules only through the registry (fastnn/backend.py).

Read from the source with ``ast``, so a forbidden import fails here even on a code path no other
test runs."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "kernels"          # installed as fastnn.kernels
MODEL_LAYER = ROOT / "fastnn"
SHARED_KERNEL_MODULES = {"contract", "errors", "geometry", "threads"}
"""The parts of fastnn.kernels the model layer may import: the contract, the exceptions the
kernels raise, the convolution geometry and the thread pools. Backend modules are not among them."""


def _module_name(path, package_root, package):
    rel = path.relative_to(package_root).with_suffix("")
    parts = [package] + list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path.name == "__init__.py"


def _imports(path, package_root, package):
    """(absolute module name, line) of every import in ``path``, relative ones resolved."""
    name, is_package = _module_name(path, package_root, package)
    base = name.split(".") if is_package else name.split(".")[:-1]
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - node.level + 1]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target, node.lineno
            for alias in node.names:            # "from . import reference" names a module too
                yield f"{target}.{alias.name}", node.lineno


def _sources(folder):
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", _sources(KERNELS), ids=lambda p: str(p.relative_to(ROOT)))
def test_kernels_do_not_import_the_model_layer(path):
    bad = [(target, line) for target, line in _imports(path, KERNELS, "fastnn.kernels")
           if target == "fastnn" or (target.startswith("fastnn.")
                                     and not target.startswith("fastnn.kernels"))]
    assert not bad, f"{path.relative_to(ROOT)} imports the model layer: {bad}"


@pytest.mark.parametrize("path", _sources(MODEL_LAYER), ids=lambda p: str(p.relative_to(ROOT)))
def test_model_layer_reaches_kernels_only_through_the_registry(path):
    bad = []
    for target, line in _imports(path, MODEL_LAYER, "fastnn"):
        parts = target.split(".")
        if parts[:2] == ["fastnn", "kernels"] and len(parts) > 2 \
                and parts[2] not in SHARED_KERNEL_MODULES:
            bad.append((target, line))
    assert not bad, (f"{path.relative_to(ROOT)} imports a backend module directly: {bad}; "
                     "use fastnn.backend.get_backend(name)")


def test_the_checks_see_forbidden_imports(tmp_path):
    """The two checks above fail on the imports they exist to catch."""
    (tmp_path / "cpu").mkdir()
    bad_kernel = tmp_path / "cpu" / "conv.py"
    bad_kernel.write_text("from ...convutil import output_hw\nfrom fastnn.errors import ShapeError\n")
    targets = {t for t, _ in _imports(bad_kernel, tmp_path, "fastnn.kernels")}
    assert {"fastnn.convutil", "fastnn.errors"} <= targets
    bad_model = tmp_path / "optim.py"
    bad_model.write_text("from .kernels import reference\n")
    assert "fastnn.kernels.reference" in {t for t, _ in _imports(bad_model, tmp_path, "fastnn")}
