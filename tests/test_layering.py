"""The package's layering, stated once and checked on every import in the code (issue 30).

Rooms, from the bottom up; a module imports only from its own room or rooms below it:

    files, backend, cpu      files written whole and locks; NumPy or CuPy; the CPU's threads
    kernels                  the CUDA sources and their launchers
    autograd, ops            Tensor and Function, and the basic ops (the one loop: each needs
                             the other)
    gradcheck                finite differences
    functional               the layers as functions
    nn                       Module, Parameter, the layer classes
    models                   AlexNet, its presets and forms
    optim, checkpoint        SGD and its schedules; HDF5 files
    data                     datasets, transforms, the loader
    train                    the loop, setup, resume, the run folder, the World of one process
    tools                    the jobs that use the core; nothing below imports them

docs/architecture.md draws the same rule.
"""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "minialex")

ROOMS = [
    {"files", "backend", "cpu"},
    {"kernels"},
    {"autograd", "ops"},
    {"gradcheck"},
    {"functional"},
    {"nn"},
    {"models"},
    {"optim", "checkpoint"},
    {"data"},
    {"train"},
    {"tools"},
]
#: Optional dependencies, and the slow-to-import ones a module needs on some paths only (h5py,
#: matplotlib, tqdm: ``import minialex`` stays light), may be imported inside functions;
#: everything else at the top.
OPTIONAL = {"cupy", "cupyx", "mpi4py", "onnx", "onnxruntime", "scipy", "torch", "h5py",
            "matplotlib", "tqdm"}


def modules():
    """{'minialex.train.loop': path, ...} for every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
                found[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


def imports(module, path):
    """(imported module, line, at top level?) for every minialex import in the file."""
    tree = ast.parse(open(path).read())
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    inside = set()            # the nodes inside a function's body
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(n) for n in ast.walk(fn) if n is not fn)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            out.append((name, node.lineno, id(node) not in inside))
    return out


def room(module):
    """The room of 'minialex.X.Y': the index in ROOMS of its first part X."""
    part = module.split(".")[1] if "." in module else ""
    for i, names in enumerate(ROOMS):
        if part in names:
            return i
    return None


def graph():
    mods = modules()
    edges = {}
    for module, path in mods.items():
        edges[module] = set()
        for name, line, _ in imports(module, path):
            if name.startswith("minialex.") and name in mods and name != module:
                edges[module].add((name, line))
    return mods, edges


def test_every_module_has_a_room():
    assert [m for m in modules() if m != "minialex" and room(m) is None] == []


def test_no_module_imports_from_a_room_above_its_own():
    _, edges = graph()
    upward = [f"{m} imports {t} (line {line})" for m, targets in edges.items()
              for t, line in targets if m != "minialex" and room(t) > room(m)]
    assert upward == []


def test_the_core_never_imports_the_tools():
    _, edges = graph()
    assert [(m, t) for m, targets in edges.items() for t, _ in targets
            if not m.startswith("minialex.tools") and t.startswith("minialex.tools")] == []


def test_the_only_loop_is_autograd_and_ops():
    """Strongly connected components of the module graph (Tarjan's algorithm)."""
    _, edges = graph()
    succ = {m: {t for t, _ in ts if not (m == "minialex" or t == "minialex")} for m, ts in edges.items()}
    # A package's __init__ importing its own submodules is how a package shows its face, not a
    # loop of the code: leave those edges out.
    for m in succ:
        succ[m] = {t for t in succ[m] if not t.startswith(m + ".")}
    index, low, stack, on, loops, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                loops.append(sorted(comp))

    for v in succ:
        if v not in index:
            visit(v)
    assert loops == [["minialex.autograd", "minialex.ops"]]


def test_imports_sit_at_the_top_except_optional_dependencies():
    """A reader sees what a module depends on in its first lines. Inside a function: only the
    optional or slow dependencies (CuPy, mpi4py, onnx, h5py, ...), and the loop's other half."""
    late = []
    for module, path in modules().items():
        for name, line, at_top in imports(module, path):
            root = name.split(".")[0]
            if at_top or root in OPTIONAL or name in ("minialex.ops", "minialex.autograd"):
                continue
            late.append(f"{module}:{line} {name}")
    assert late == [], f"{len(late)} imports inside functions"


@pytest.mark.parametrize("old,new", [("minialex.viz", "minialex.tools.viz"),
                                     ("minialex.kernels.host", "minialex.tools.cuda_host"),
                                     ("minialex.run_setup", "minialex.train.setup")])
def test_a_moved_module_says_where_it_went(old, new):
    import importlib
    with pytest.raises(ImportError, match=f"{old} moved to {new}"):
        importlib.import_module(old)
