"""Each dvc.yaml stage depends on exactly the package modules its command can import: generated, never hand-kept.

A stage's command is ``python -m lesionlab <command> [<stage>] ...``. Its code is the import closure (every
``import lesionlab.x`` / ``from lesionlab import x`` anywhere in a module, function-level imports included) of:
the CLI's entry (``__main__``, ``cli``'s module-level imports and the functions every command runs through), the
command's handler and the ``cli`` functions it calls, and, for ``run <stage>``, the imports of the stage's
notebook. A lazy import counts: a module a stage may load is a module whose change may change its outputs.

``lesionlab deps`` rewrites the ``src/lesionlab/*.py`` entries of every stage's ``deps:`` in dvc.yaml (other
entries and their order are kept); ``lesionlab deps --check`` lists what a stage misses or lists in excess and
fails, which is what the test suite runs.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path

PACKAGE = "src/lesionlab"
#: functions of cli.py that every command runs through (entry, guard, error handling, timing)
_CLI_COMMON = ("main", "_guarded", "_user_errors", "_stage_name")


def _imported(tree: ast.AST, modules: set[str]) -> set[str]:
    """Package modules imported anywhere in ``tree``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lesionlab.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "lesionlab":
                found |= {a.name for a in node.names if a.name in modules}
            elif node.module.startswith("lesionlab."):
                found.add(node.module.split(".")[1])
    return found & modules


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in the file)."""
    files = {p.stem: p for p in (Path(root) / PACKAGE).glob("*.py")}
    modules = set(files)
    return {m: _imported(ast.parse(p.read_text(encoding="utf-8")), modules) for m, p in files.items()}


def closure(graph: dict[str, set[str]], start) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        module = todo.pop()
        if module not in seen and module in graph:
            seen.add(module)
            todo.extend(graph[module])
    return seen


def _cli_functions(root: Path) -> tuple[dict[str, ast.FunctionDef], dict[str, str], ast.Module]:
    tree = ast.parse((Path(root) / PACKAGE / "cli.py").read_text(encoding="utf-8"))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    handlers, current = {}, None
    for node in ast.walk(functions["build_parser"]):   # sub.add_parser("name") ... p.set_defaults(func=_handler)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "add_parser" and node.args and isinstance(node.args[0], ast.Constant):
                current = node.args[0].value
            elif node.func.attr == "set_defaults" and current:
                handlers.update({current: k.value.id for k in node.keywords
                                 if k.arg == "func" and isinstance(k.value, ast.Name)})
    return functions, handlers, tree


def _called_cli_functions(functions: dict[str, ast.FunctionDef], start: list[str]) -> set[str]:
    """The cli functions ``start`` may run (names they mention, transitively); ``build_parser`` names every
    handler without running one, so it is not followed."""
    seen, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        if name != "build_parser":
            todo.extend(n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name) and n.id in functions)
    return seen


def notebook_imports(path: Path, modules: set[str]) -> set[str]:
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
    return _imported(ast.parse(code), modules)


def command_modules(root: Path, cmd: str, graph: dict[str, set[str]] | None = None) -> list[str]:
    """The package files a ``python -m lesionlab ...`` command can import, as dvc.yaml paths (sorted)."""
    from lesionlab.notebooks import STAGES

    graph = graph or import_graph(root)
    words = shlex.split(re.sub(r"\$\{[^}]*\}", "X", cmd))
    if words[:3] != ["python", "-m", "lesionlab"] or len(words) < 4:
        raise ValueError(f"not a `python -m lesionlab <command>` stage command: {cmd!r}")
    functions, handlers, tree = _cli_functions(root)
    command = words[3]
    if command not in handlers:
        raise ValueError(f"{cmd!r}: unknown lesionlab command {command!r}")
    top = _imported(ast.Module(body=[n for n in tree.body if not isinstance(n, ast.FunctionDef)], type_ignores=[]),
                    set(graph))
    used = _called_cli_functions(functions, [*_CLI_COMMON, handlers[command]])
    start = {"__main__", "__init__", "cli"} | top
    for name in used:
        start |= _imported(functions[name], set(graph))
    if command == "run":
        start |= notebook_imports(Path(root) / "notebooks" / STAGES[words[4]].notebook, set(graph))
    # cli.py's own imports are those of the functions this command runs (above), not of every command's handler
    return sorted(f"{PACKAGE}/{m}.py" for m in closure({**graph, "cli": set()}, start))


def _stage_bodies(dvc: dict):
    """(name, the mapping that holds cmd and deps) for every stage, foreach/matrix stages included."""
    for name, stage in dvc["stages"].items():
        yield name, stage.get("do", stage)


def check(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Stage -> (modules it can import but does not list, modules it lists but cannot import); empty = in sync."""
    from ruamel.yaml import YAML

    dvc = YAML(typ="safe").load((Path(root) / "dvc.yaml").read_text(encoding="utf-8"))
    graph, out = import_graph(root), {}
    for name, body in _stage_bodies(dvc):
        want = set(command_modules(root, body["cmd"], graph))
        have = {d for d in body.get("deps", []) if isinstance(d, str) and d.startswith(PACKAGE + "/")}
        if want != have:
            out[name] = (sorted(want - have), sorted(have - want))
    return out


def rewrite(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Bring every stage's package-module deps in line with :func:`command_modules` (other deps kept in place;
    the modules go where the first one was, else after the notebook / first dep). Returns what changed."""
    from ruamel.yaml import YAML

    path = Path(root) / "dvc.yaml"
    yaml = YAML()   # round trip: comments and order kept
    yaml.preserve_quotes = True
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)   # dvc.yaml's own style
    dvc = yaml.load(path.read_text(encoding="utf-8"))
    changes = check(root)
    graph = import_graph(root)
    for name, body in _stage_bodies(dvc):
        if name not in changes:
            continue
        deps = body["deps"]
        first = next((i for i, d in enumerate(deps) if isinstance(d, str) and d.startswith(PACKAGE + "/")), None)
        for i in reversed(range(len(deps))):
            if isinstance(deps[i], str) and deps[i].startswith(PACKAGE + "/"):
                del deps[i]
        at = first if first is not None else min(len(deps), 2)
        for offset, module in enumerate(command_modules(root, body["cmd"], graph)):
            deps.insert(at + offset, module)
    with path.open("w", encoding="utf-8") as f:
        yaml.dump(dvc, f)
    return changes
