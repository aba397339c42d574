"""What importing the package does: nothing heavy (lazy exports, no import cycles), and
the OpenMP settings before MXNet loads."""

import ast
import importlib
import os
import pathlib
import subprocess
import sys

import pytest

import gluon_triplet

_OPENMP = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def _import_fresh(monkeypatch, mxnet_loaded=False, **env):
    """Re-run the package's import-time code with ``env`` as the only OpenMP variables;
    return them afterwards. Submodules stay cached, so only ``__init__`` runs again."""
    for name in _OPENMP:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if mxnet_loaded:
        import mxnet  # noqa: F401
    else:
        monkeypatch.delitem(sys.modules, "mxnet", raising=False)
    importlib.reload(gluon_triplet)
    return {name: os.environ.get(name) for name in _OPENMP}


def test_openmp_threads_wait_passively_by_default(monkeypatch):
    got = _import_fresh(monkeypatch)
    assert got["OMP_WAIT_POLICY"] == "PASSIVE"
    assert got["OMP_NUM_THREADS"] == str(len(os.sched_getaffinity(0)))
    assert got["GOMP_SPINCOUNT"] is None


@pytest.mark.parametrize(
    "env, policy",
    [
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),  # the user's choice is kept
        ({"GOMP_SPINCOUNT": "300000"}, None),  # a spin count chosen: no policy added
    ],
)
def test_a_chosen_wait_is_left_alone(monkeypatch, env, policy):
    got = _import_fresh(monkeypatch, **env)
    assert got["OMP_WAIT_POLICY"] == policy
    for name, value in env.items():
        assert got[name] == value


def test_nothing_is_set_once_mxnet_is_loaded(monkeypatch):
    # OpenMP read its settings when MXNet loaded: setting them now would only mislead
    got = _import_fresh(monkeypatch, mxnet_loaded=True)
    assert got == {name: None for name in _OPENMP}


def test_a_fresh_interpreter_gets_passive_waits():
    env = {k: v for k, v in os.environ.items() if k not in _OPENMP}
    code = "import gluon_triplet, os; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "PASSIVE"


def _fresh_modules(code):
    """The top-level modules a fresh interpreter has loaded after running ``code``."""
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import gluon_triplet",
        "from gluon_triplet import Config, ConfigError, DataError, __version__",
        "import gluon_triplet.data, gluon_triplet.training, gluon_triplet.runs",
        "from gluon_triplet.cli import main, build_parser; build_parser().format_help()",
        # A run directory's config (an earlier version's too) is read without MXNet.
        "from gluon_triplet.runs.rundir import RunDir, upgrade_recorded\n"
        "from gluon_triplet.nets.architectures import cnn_architecture, resolve_model_name",
    ],
)
def test_importing_the_package_and_the_help_load_no_mxnet(code):
    loaded = _fresh_modules(code)
    assert "mxnet" not in loaded
    assert "gluon_triplet" in loaded


def test_a_public_name_loads_its_module_when_read():
    loaded = _fresh_modules("from gluon_triplet import TripletDataset")
    assert {"mxnet", "gluon_triplet.data.triplets"} <= loaded


@pytest.mark.parametrize(
    "package",
    ["", ".data", ".nets", ".training", ".training.miners", ".evaluation", ".runs", ".search"],
)
def test_every_exported_name_resolves(package):
    module = importlib.import_module(f"gluon_triplet{package}")
    assert module.__all__, package
    for name in module.__all__:
        assert getattr(module, name) is not None, (package, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018
    assert set(module.__all__) <= set(dir(module))


def test_the_nets_keep_their_public_names():
    # Exported before nets/ was split by concept; the option helpers went with the options.
    for name in (
        "BACKBONES",
        "MODELS",
        "BackboneEmbedding",
        "EmbeddingCNN",
        "EmbeddingMLP",
        "build_model",
        "embed",
        "model_from_config",
        "export_model",
    ):
        assert name in gluon_triplet.__all__ and hasattr(gluon_triplet.nets, name), name
    assert "ARCHITECTURES" in gluon_triplet.__all__


_PACKAGE = pathlib.Path(gluon_triplet.__file__).parent


def _module_name(path):
    parts = ["gluon_triplet", *path.relative_to(_PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node):
    test = node.test
    return isinstance(node, ast.If) and getattr(test, "id", getattr(test, "attr", "")) == (
        "TYPE_CHECKING"
    )


def _imports(tree):
    """Every import statement that can run: module level and inside functions, never
    under ``if TYPE_CHECKING:``."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph():
    """module -> the package modules it imports, from the sources."""
    modules = {_module_name(p): p for p in _PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rsplit(".", 1)[0]
        edges = set()
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = here.split(".")
                if node.level > 1:
                    base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + [node.module] if node.module else base)
                if node.level == 0:
                    prefix = node.module or ""
                targets = [
                    f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix
                    for a in node.names
                ]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def _cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    assert "gluon_triplet.data.datasets" in graph["gluon_triplet.runs.run"]
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_errors_is_a_leaf():
    assert import_graph()["gluon_triplet.errors"] == set()
