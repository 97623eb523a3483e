"""The import structure of burn_tf: one-way layers, no hidden imports, no circles.

Every module of the package is parsed with ``ast`` (nothing is imported for (a) and (b)):

(a) each import of a burn_tf module goes to the importer's own layer or a lower one;
(b) no ``import burn_tf…`` / ``from burn_tf… import`` inside a function, except the
    allow-list below: a function-level import hides a dependency (often a circle);
(c) the modules whose circle the layering broke import in a fresh interpreter.
(d) no module is over ~500 lines (a file over 520 fails, the allow-list below aside).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "burn_tf"

# Layer of each top-level module or subpackage of burn_tf ("__init__": the package root).
# A module may import modules of its own layer or of a lower one, never of a higher one:
#   (schema, io, progress) → data → models → (convert, saved_backbone)
#      → (losses, ops, optim, callbacks, summary) → methods → config → pretrain → export → evaluate → studies
# schema (strict dataclass configs), io (atomic writes) and progress (progress lines) import
# nothing of burn_tf.
# convert reads models' architectures to load weights into them (PyTorch checkpoints, the
# teachers built with their weights), so it sits above models, which never import it.
# saved_backbone imports only io and models (it rebuilds a ReActNet-A from its metadata), so
# it sits right above models and every later layer may import it. Callbacks sit below the
# methods because a method returns its own (BURN: λ(t); momentum methods: τ(t)); config
# sits above the methods because ``method.name`` selects the method's own dataclass.
LAYERS = {
    "__init__": 0,  # imports nothing
    "schema": 0,  # ConfigError and the strict dataclass builder
    "io": 0,  # atomic writes
    "distribute": 0,  # train.strategy → tf.distribute, and the replica plumbing of a step; imports only schema
    "progress": 0,  # progress lines with the time left (pretraining, evaluators); imports nothing
    "data": 1,
    "models": 2,
    "convert": 3,  # PyTorch checkpoints → the weights of models/; teachers built with their weights
    "saved_backbone": 3,  # the exported-backbone format: the contract between pretraining and the rest
    "losses": 4,
    "ops": 4,  # not losses: schedules, diagnostics, targets, queue/EMA/bank updates, clustering
    "optim": 4,
    "callbacks": 4,
    "summary": 4,  # larq's counts of a model (reads only saved_backbone and models): pretraining prints its totals
    "methods": 5,
    "config": 6,
    "pretrain": 7,  # the stage loop and the CLI
    "build": 7,  # data stream, teacher, method, optimizer, strategy, checkpoint of a stage
    "rundir": 7,  # run-directory states and the checks before a stage touches it
    "export": 8,  # may import summary (one way: it never imports export); the model card is export's
    "evaluate": 9,
    "studies": 10,  # the demo, the ablation, the comparison, their harness and figures: nothing imports them
}

# (module, function, imported module) of every allowed function-level burn_tf import.
# Delete an entry when its import moves to the top of its module.
FUNCTION_LEVEL_IMPORTS = {
    # Genuinely optional heavy dependency: `import burn_tf.convert` (the torch-free
    # checkpoint reader) must not import TensorFlow; the converters need it.
    ("burn_tf.convert", "__getattr__", "burn_tf.convert.converters"),
    # Lazy, so that `python -m burn_tf.data.throughput` does not import the module twice.
    ("burn_tf.data", "__getattr__", "burn_tf.data.throughput"),
}

# Modules allowed over MAX_MODULE_LINES for now. Delete an entry when its module is split.
MAX_MODULE_LINES = 520  # the "no module in burn_tf/ over ~500 lines"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _unit(module: str) -> str:
    """The LAYERS key of a burn_tf module: its top-level module or subpackage."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """(imported burn_tf module, enclosing function or None, line) of every import in ``module``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, function, child.lineno) for a in child.names if a.name.split(".")[0] == "burn_tf")
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against the importing package
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                if base.split(".")[0] == "burn_tf":
                    for alias in child.names:  # `from burn_tf.x import y`: y may be a module
                        sub = f"{base}.{alias.name}"
                        found.append((sub if sub in MODULES else base, function, child.lineno))
            visit(child, child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function)

    visit(ast.parse(path.read_text(), str(path)), None)
    return found


def test_every_module_has_a_layer():
    assert {_unit(m) for m in MODULES} <= set(LAYERS), "place the new module in LAYERS"


def test_no_lower_layer_imports_a_higher_one():
    violations = [
        f"{module}:{line} ({_unit(module)}, layer {LAYERS[_unit(module)]}) imports {target} "
        f"({_unit(target)}, layer {LAYERS[_unit(target)]})"
        for module in MODULES
        for target, _, line in _imports(module)
        if LAYERS[_unit(target)] > LAYERS[_unit(module)]
    ]
    assert not violations, "\n".join(violations)


def test_no_burn_tf_import_inside_a_function():
    found = {(module, function, target) for module in MODULES for target, function, _ in _imports(module) if function}
    unexpected = sorted(found - FUNCTION_LEVEL_IMPORTS)
    assert not unexpected, "import these at the top of the module (or justify them in the allow-list):\n" + "\n".join(
        map(str, unexpected))


def test_no_two_rooms_import_each_other():
    # Rooms (LAYERS keys: top-level modules and subpackages) of one layer may import each
    # other's modules; a circle of rooms, even through function-level imports, is refused.
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        for target, _, _ in _imports(module):
            if _unit(target) != _unit(module):
                graph.setdefault(_unit(module), set()).add(_unit(target))
    done: set[str] = set()

    def visit(room: str, path: list[str]) -> None:
        if room in path:
            pytest.fail("rooms import each other: " + " → ".join(path[path.index(room):] + [room]))
        if room in done:
            return
        for target in sorted(graph.get(room, ())):
            visit(target, path + [room])
        done.add(room)

    for room in sorted(graph):
        visit(room, [])


def test_module_level_imports_have_no_circle():
    graph = {m: {t for t, function, _ in _imports(m) if function is None and t != m} for m in MODULES}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            pytest.fail("import circle: " + " → ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, path + [module])
        done.add(module)

    for module in MODULES:
        visit(module, [])


@pytest.mark.parametrize(
    "module", ["burn_tf.saved_backbone", "burn_tf.summary", "burn_tf.export.model_card", "burn_tf.export"]
)
def test_imports_in_a_fresh_interpreter(module):
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=REPO, timeout=300)


def test_no_module_is_over_500_lines():
    lengths = {p.relative_to(REPO).as_posix(): len(p.read_text().splitlines()) for p in MODULES.values()}
    too_long = sorted(f"{path}: {n} lines" for path, n in lengths.items()
                      if n > MAX_MODULE_LINES)
    assert not too_long, "split these modules by concern:\n" + "\n".join(too_long)
