"""The package's layers, as ARCHITECTURE.md lists them, import only downward.

The import graph is read from the source (every ``import`` statement, also
those inside functions), so a lazy import cannot hide an upward edge or a
cycle. The checks are first run on small made-up graphs, so each can be seen
to fail.
"""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "captioning"
LAYER_HEADING = re.compile(r"^## Layer (\d+)\b")
MODULE_ROW = re.compile(r"^\| `(captioning/[^`]+\.py)` \|")


def module_name(path):
    """``captioning/cnn/encode.py`` -> ``captioning.cnn.encode``."""
    parts = Path(path).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def documented_layers(text):
    """``{module: layer number}`` from ARCHITECTURE.md's tables; a module
    listed twice is an error."""
    layers, layer = {}, None
    for line in text.splitlines():
        heading = LAYER_HEADING.match(line)
        if heading:
            layer = int(heading.group(1))
            continue
        row = MODULE_ROW.match(line)
        if row and layer is not None:
            name = module_name(row.group(1))
            assert name not in layers, "%s is listed twice" % row.group(1)
            layers[name] = layer
    return layers


def imported_modules(path, known):
    """The ``captioning`` modules that ``path`` imports (anywhere in it)."""
    tree = ast.parse(Path(path).read_text("utf-8"))
    this = module_name(Path(path).relative_to(REPO))
    package = this if Path(path).name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # `from pkg import mod` imports pkg.mod when that is a module
            names = [base + "." + a.name if base + "." + a.name in known else base
                     for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:   # a name inside a module
                name = name.rpartition(".")[0]
            if name and name.startswith("captioning") and name != this:
                found.add(name)
    return found


def import_graph():
    files = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(p.relative_to(REPO)) for p in files}
    return {module_name(p.relative_to(REPO)): imported_modules(p, known) for p in files}


def upward_imports(graph, layers):
    """``[(importer, imported)]`` where the imported module's layer is higher."""
    return sorted((a, b) for a, deps in graph.items() for b in deps
                  if layers[b] > layers[a])


def cycles(graph):
    """Each strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


# -------------------------------------------------- the checks can fail

def test_the_checks_find_an_upward_import_and_a_cycle():
    layers = {"a": 0, "b": 1, "c": 1}
    assert upward_imports({"a": {"b"}, "b": set(), "c": set()}, layers) == [("a", "b")]
    assert upward_imports({"a": set(), "b": {"a", "c"}, "c": set()}, layers) == []
    assert cycles({"a": set(), "b": {"c"}, "c": {"b"}}) == [["b", "c"]]
    assert cycles({"a": set(), "b": {"c"}, "c": {"a"}}) == []


def test_imports_are_read_from_the_source_also_inside_functions(tmp_path, monkeypatch):
    source = ("import captioning.stack\nfrom captioning.cnn import encode\n"
              "from captioning.io.files import atomic_write\n"
              "def f():\n    from captioning.training import train\n")
    (tmp_path / "captioning").mkdir()
    path = tmp_path / "captioning" / "probe.py"
    path.write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    known = {"captioning", "captioning.stack", "captioning.cnn", "captioning.cnn.encode",
             "captioning.io", "captioning.io.files", "captioning.training"}
    assert imported_modules(path, known) == {
        "captioning.stack", "captioning.cnn.encode", "captioning.io.files",
        "captioning.training"}


# -------------------------------------------------- the package

def test_every_module_is_in_architecture_md_once():
    layers = documented_layers((REPO / "ARCHITECTURE.md").read_text("utf-8"))
    modules = set(import_graph())
    assert sorted(modules - set(layers)) == [], "modules missing from ARCHITECTURE.md"
    assert sorted(set(layers) - modules) == [], "ARCHITECTURE.md lists modules that do not exist"


def test_no_module_imports_a_higher_layer():
    layers = documented_layers((REPO / "ARCHITECTURE.md").read_text("utf-8"))
    assert upward_imports(import_graph(), layers) == []


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def theano_before_stack(path):
    """The line of a top-level ``theano``/``lasagne`` import that comes before
    the module's top-level ``import captioning.stack`` (None if none does).
    Imported first, Theano reads no flags (and crashes on numpy >= 1.22)."""
    for node in ast.parse(Path(path).read_text("utf-8")).body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        if "captioning.stack" in names:
            return None
        if any(n.split(".")[0] in ("theano", "lasagne") for n in names):
            return node.lineno
    return None


def test_the_stack_check_finds_theano_imported_first(tmp_path):
    first = tmp_path / "first.py"
    first.write_text('"""doc"""\nimport numpy as np\nfrom theano import tensor\n'
                     'import captioning.stack\n')
    later = tmp_path / "later.py"
    later.write_text("import os\nimport captioning.stack  # noqa\nimport lasagne\n"
                     "def f():\n    import theano\n")
    assert theano_before_stack(first) == 3
    assert theano_before_stack(later) is None


def test_modules_import_the_stack_before_theano():
    # `captioning/stack/` is the set-up itself
    late = ["%s:%d" % (p.relative_to(REPO), theano_before_stack(p))
            for p in sorted(PACKAGE.rglob("*.py"))
            if "stack" not in p.relative_to(PACKAGE).parts[:1] and theano_before_stack(p)]
    assert late == []


@pytest.mark.slow
@pytest.mark.parametrize("module", ["captioning.cnn.efficientnet", "captioning.cnn.depthwise"])
def test_a_theano_module_imports_alone(module):
    # as `caption data synthetic` first imports the CNN, in a fresh interpreter
    out = subprocess.run([sys.executable, "-c", "import " + module], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr.strip().splitlines()[-1]


def test_importing_the_package_imports_nothing():
    assert import_graph()["captioning"] == set()


@pytest.mark.slow
def test_caption_help_does_not_import_theano():
    # Every subcommand's --help, in a fresh interpreter.
    code = ("import sys\n"
            "from captioning.commands import SUBCOMMANDS, main\n"
            "for args in [['--help']] + [[c, '--help'] for c in SUBCOMMANDS]:\n"
            "    try:\n"
            "        main(args)\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print('theano' in sys.modules, 'lasagne' in sys.modules, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stderr.strip().splitlines()[-1] == "False False"
    assert "caption train" in out.stdout or "usage: caption train" in out.stdout
