"""The layout's rules, read from the source: imports flow one way between packages and modules,
bAbI and language-modelling code never import each other, files stay short; and the light
entry points load no heavy library."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("ingest", "model", "serving", "pipeline", "memn2n_cli")
MAX_LINES = 400


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, pathlib.Path]:
    return {
        module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


def project_imports(path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
    """Every project module `path` imports, anywhere in the file (functions and TYPE_CHECKING
    blocks included); `from a import b` counts as a.b when that is a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    graph = {name: project_imports(path, modules) for name, path in modules.items()}
    for name, imported in graph.items():  # a module also depends on its package's __init__
        imported.discard(name)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph`, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return path[path.index(successor) :] + [successor]
            if successor not in state and (found := visit(successor, [*path, successor])):
                return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [node])):
            return found
    return None


def test_no_import_cycle_between_modules_or_packages():
    graph = import_graph()
    assert cycle(graph) is None, cycle(graph)
    packages: dict[str, set[str]] = {}
    for name, imported in graph.items():
        top = name.split(".")[0]
        packages.setdefault(top, set()).update(m.split(".")[0] for m in imported)
    for top, imported in packages.items():
        imported.discard(top)
    assert cycle(packages) is None, cycle(packages)


def test_babi_and_language_modelling_code_never_import_each_other():
    def experiment(name: str) -> str | None:
        parts = name.split(".")
        return parts[1] if len(parts) > 2 and parts[1] in ("babi", "lm") else None

    crossing = [
        (name, imported)
        for name, imports in import_graph().items()
        for imported in imports
        if experiment(name) and experiment(imported) and experiment(name) != experiment(imported)
    ]
    assert crossing == []


def test_no_source_file_over_the_line_limit():
    long = {
        name: n
        for name, path in source_modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def loaded_after(statements: str) -> set[str]:
    """The heavy libraries a fresh interpreter has loaded after running `statements`."""
    probe = (
        f"import sys\n{statements}\n"
        "heavy = {'tensorflow', 'keras', 'tensorflow_transform', 'tfx', 'apache_beam'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(ast.literal_eval(result.stdout.strip().splitlines()[-1]))


def test_a_config_checks_itself_without_tensorflow_keras_or_transform(babi_dir):
    folder = f"babi_dir={str(babi_dir)!r}, tasks=(1, 8)"
    statements = (
        "from pipeline.configs import PipelineConfig\n"
        f"PipelineConfig({folder}, memn2n_settings={{'hops': 2}})\n"
        "try:\n"
        f"    PipelineConfig({folder}, lstm_settings={{'units': 'x'}})\n"
        "except ValueError as e:\n"
        "    assert 'lstm_settings: units must be a int' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('a bad override passed')"
    )
    assert loaded_after(statements) == set()


def test_the_command_line_and_the_rest_client_load_no_tensorflow():
    statements = (
        "from memn2n_cli.main import build_parser\n"
        "build_parser().parse_args(['query', '--rest', '--prefix', 'the'])\n"
        "from memn2n_cli.commands import query\n"
        "from serving.client import rest_predict, attention_table"
    )
    assert loaded_after(statements) == set()
