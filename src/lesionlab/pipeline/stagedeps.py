"""Each dvc.yaml stage depends on exactly the package modules its command can import: generated, never hand-kept.

A stage's command is ``python -m lesionlab <command> [<stage>] ...``. Its code is the import closure (every
``import lesionlab.x`` / ``from lesionlab import x`` anywhere in a module, function-level imports included) of:
the CLI's entry (``__main__``, ``cli``'s module-level imports and the functions every command runs through), the
command's handler and the ``cli`` functions it calls, and, for ``run <stage>``, the imports of the stage's
notebook. A lazy import counts: a module a stage may load is a module whose change may change its outputs.

``lesionlab deps`` rewrites the ``src/lesionlab/**.py`` entries of every stage's ``deps:`` in dvc.yaml (other
entries and their order are kept); ``lesionlab deps --check`` lists what a stage misses or lists in excess and
fails, which is what the test suite runs. Both also keep dvc.yaml's top-level ``plots:`` (the overlays of
params.yaml's rows, :mod:`lesionlab.pipeline.dvcviews`) in line.
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


def _with_prefixes(name: str, modules) -> set[str]:
    """``a.b.c`` -> the modules among ``a``, ``a.b``, ``a.b.c`` (importing a submodule runs its packages' inits)."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules)


def _imported(tree: ast.AST, modules) -> set[str]:
    """Package modules imported anywhere in ``tree`` (dotted names relative to the package: ``config``,
    ``families``, ``families.cnn``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("lesionlab."):
                    found |= _with_prefixes(a.name.removeprefix("lesionlab."), modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "lesionlab":
                found |= {a.name for a in node.names} & set(modules)
            elif node.module.startswith("lesionlab."):
                base = node.module.removeprefix("lesionlab.")
                found |= _with_prefixes(base, modules)
                found |= {f"{base}.{a.name}" for a in node.names} & set(modules)  # from package import submodule
    return found


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package and its sub-packages."""
    package = Path(root) / PACKAGE
    out = {}
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(package).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" and len(rel.parts) > 1 else rel.parts
        out[".".join(parts)] = path
    return out


def _role_targets(trees: dict[str, ast.AST], modules) -> dict[str, set[str]]:
    """Model-family roles -> the modules that implement them: the ``"lesionlab.x:function"`` strings passed to
    ``Family(...)`` (lesionlab.models.families), which are imported only when a role is called."""
    out: dict[str, set[str]] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Family":
                for kw in node.keywords:
                    value = kw.value.value if isinstance(kw.value, ast.Constant) else None
                    if isinstance(value, str) and re.fullmatch(r"lesionlab\.[\w.]+:\w+", value):
                        target = value.split(":")[0].removeprefix("lesionlab.")
                        out.setdefault(kw.arg, set()).update(_with_prefixes(target, modules))
    return out


def _called_roles(tree: ast.AST) -> set[str]:
    """The family roles a module runs: ``family.call("load", ...)``."""
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "call"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (anywhere in the file). A sub-package whose ``__init__`` imports
    its modules by discovery (``pkgutil.iter_modules``, as the model-family registry does) depends on all of them;
    a module that calls a family role (``family.call("load", ...)``) depends on every module implementing it."""
    files = module_files(root)
    texts = {name: path.read_text(encoding="utf-8") for name, path in files.items()}
    trees = {name: ast.parse(text) for name, text in texts.items()}
    roles = _role_targets(trees, files)
    graph = {}
    for name, path in files.items():
        graph[name] = _imported(trees[name], files) - {name}
        if path.name == "__init__.py" and "iter_modules(" in texts[name] and name != "__init__":
            graph[name] |= {m for m in files if m.startswith(name + ".")}
        for role in _called_roles(trees[name]):
            graph[name] |= roles.get(role, set()) - {name}
    return graph


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
    for node in ast.walk(functions["build_parser"]):  # sub.add_parser("name") ... p.set_defaults(func=_handler)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "add_parser" and node.args and isinstance(node.args[0], ast.Constant):
                current = node.args[0].value
            elif node.func.attr == "set_defaults" and current:
                for k in node.keywords:
                    if k.arg == "func" and isinstance(k.value, ast.Name):
                        handlers[current] = k.value.id
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
    from lesionlab.pipeline.notebooks import STAGES

    graph = graph or import_graph(root)
    words = shlex.split(re.sub(r"\$\{[^}]*\}", "X", cmd))
    if words[:3] != ["python", "-m", "lesionlab"] or len(words) < 4:
        raise ValueError(f"not a `python -m lesionlab <command>` stage command: {cmd!r}")
    functions, handlers, tree = _cli_functions(root)
    command = words[3]
    if command not in handlers:
        raise ValueError(f"{cmd!r}: unknown lesionlab command {command!r}")
    top = _imported(
        ast.Module(body=[n for n in tree.body if not isinstance(n, ast.FunctionDef)], type_ignores=[]), set(graph)
    )
    used = _called_cli_functions(functions, [*_CLI_COMMON, handlers[command]])
    start = {"__main__", "__init__", "cli"} | top
    for name in used:
        start |= _imported(functions[name], set(graph))
    if command == "run":
        start |= notebook_imports(Path(root) / "notebooks" / STAGES[words[4]].notebook, set(graph))
    # cli.py's own imports are those of the functions this command runs (above), not of every command's handler
    files = module_files(root)
    return sorted(files[m].relative_to(Path(root)).as_posix() for m in closure({**graph, "cli": set()}, start))


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
    for key, want in _sections_want(root).items():
        have = _plain(dvc.get(key) or type(want)())
        if have != want:
            names = [next(iter(p)) for p in want] if isinstance(want, list) else list(want)
            old = [next(iter(p)) for p in have if isinstance(p, dict)] if isinstance(have, list) else list(have)
            out[key] = ([n for n in names if n not in old] or ["(changed entries)"], [n for n in old if n not in names])
    return out


#: the generated top-level sections of dvc.yaml (:mod:`lesionlab.pipeline.dvcviews`); :func:`check` reports a
#: stale one under its name
PLOTS, ARTIFACTS = "plots", "artifacts"
SECTIONS = (ARTIFACTS, PLOTS)


def _sections_want(root: Path) -> dict:
    from lesionlab.config import load_params
    from lesionlab.pipeline.dvcviews import sections

    return sections(load_params(Path(root) / "params.yaml"))


def _plain(value):
    """ruamel's round-trip containers as plain lists and dicts (for comparison)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def rewrite(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Bring every stage's package-module deps in line with :func:`command_modules` (other deps kept in place;
    the modules go where the first one was, else after the notebook / first dep). Returns what changed."""
    from ruamel.yaml import YAML

    path = Path(root) / "dvc.yaml"
    yaml = YAML()  # round trip: comments and order kept
    yaml.preserve_quotes = True
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)  # dvc.yaml's own style
    dvc = yaml.load(path.read_text(encoding="utf-8"))
    changes = check(root)
    graph = import_graph(root)
    for key, want in _sections_want(root).items():
        if key in changes:
            dvc[key] = want
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
