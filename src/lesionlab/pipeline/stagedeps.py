"""Each dvc.yaml stage depends on exactly the package modules its command can import: generated, never hand-kept.

A stage's command is ``python -m lesionlab <command> [<stage>] ...``. Its code is the import closure (every
``import lesionlab.x`` / ``from lesionlab import x`` anywhere in a module, function-level imports included) of:
the CLI's entry (``__main__``, ``cli``'s module-level imports and the functions every command runs through), the
command's handler and the ``cli`` functions it calls, and, for ``run <stage>``, the imports of the stage's
notebook. A lazy import counts: a module a stage may load is a module whose change may change its outputs.

How DVC sees it: the first stage, ``code`` (``lesionlab deps --fingerprints``), depends on the whole package and
writes one **fingerprint** per stage, ``results/code/<stage>.txt``: the md5 and path of every module that stage's
command can import, computed from the code as it is when the pipeline runs (a new module or import is in it at
once). Each stage depends on its fingerprint, not on ~60 module files: a change to a module re-runs exactly the
stages whose fingerprint lists it, and a no-op ``dvc status`` checks one file per stage instead of ~60 (measured on
the 74-stage HAM10000 pipeline, 2,874 module deps: 5.6-5.8 s -> 5.0-5.4 s on a 2-core CPU).

``lesionlab deps`` brings dvc.yaml in line (each stage depends on ``results/code/<stage>.txt`` and on no module
file; ``code`` on the package and the notebooks) and writes the fingerprints; ``lesionlab deps --check`` lists
what is out of line and fails, which is what the test suite runs. Both also keep dvc.yaml's top-level ``plots:``
and ``artifacts:`` (from params.yaml's rows, :mod:`lesionlab.pipeline.dvcviews`) in line.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path

PACKAGE = "src/lesionlab"
#: the stage that writes every stage's fingerprint, and where they go
CODE_STAGE = "code"
FINGERPRINTS = "results/code"
CODE_STAGE_DEPS = [PACKAGE, "notebooks"]


def fingerprint_path(stage: str) -> str:
    """The file a stage depends on for its code: its modules' md5s (``results/code/<stage>.txt``)."""
    return f"{FINGERPRINTS}/{stage}.txt"


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


def _load(root: Path) -> dict:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load((Path(root) / "dvc.yaml").read_text(encoding="utf-8"))


def fingerprints(root: Path) -> dict[str, str]:
    """Stage -> the text of its fingerprint: the command, then ``<md5>  <path>`` of each module it can import."""
    import hashlib

    graph = import_graph(root)
    out = {}
    for name, body in _stage_bodies(_load(root)):
        if name == CODE_STAGE:
            continue
        lines = [f"# the package modules `{body['cmd']}` can import (lesionlab deps --fingerprints)"]
        for module in command_modules(root, body["cmd"], graph):
            lines.append(f"{hashlib.md5((Path(root) / module).read_bytes()).hexdigest()}  {module}")
        out[name] = "\n".join(lines) + "\n"
    return out


def write_fingerprints(root: Path) -> list[str]:
    """Write every stage's fingerprint (only files whose text changes are rewritten; a stage's file that no
    stage owns any more is removed); returns the stages whose fingerprint changed."""
    folder = Path(root) / FINGERPRINTS
    folder.mkdir(parents=True, exist_ok=True)
    wanted, changed = fingerprints(root), []
    for name, text in wanted.items():
        path = Path(root) / fingerprint_path(name)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    for stale in folder.glob("*.txt"):
        if stale.stem not in wanted:
            stale.unlink()
    return changed


def _module_deps(body: dict) -> list[str]:
    return [d for d in body.get("deps", []) if isinstance(d, str) and d.startswith(PACKAGE + "/")]


def check(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Stage -> (code dependencies it lacks, code dependencies it must not list); empty = in line. Every stage
    depends on its fingerprint and on no module file; ``code`` on the package and the notebooks."""
    dvc, out = _load(root), {}
    for name, body in _stage_bodies(dvc):
        deps = [d for d in body.get("deps", []) if isinstance(d, str)]
        want = CODE_STAGE_DEPS if name == CODE_STAGE else [fingerprint_path(name)]
        extra = _module_deps(body) + [d for d in deps if d.startswith(FINGERPRINTS + "/") and d not in want]
        missing = [d for d in want if d not in deps]
        if missing or extra:
            out[name] = (missing, extra)
    if CODE_STAGE not in dvc["stages"]:
        out[CODE_STAGE] = (["the stage itself (lesionlab deps adds it)"], [])
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


def _code_stage():
    from ruamel.yaml.comments import CommentedMap

    stage = CommentedMap()
    stage["cmd"] = "python -m lesionlab deps --fingerprints"
    stage["deps"] = list(CODE_STAGE_DEPS)
    stage["outs"] = [FINGERPRINTS]
    return stage


def rewrite(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Bring dvc.yaml in line (:func:`check`): each stage's module deps replaced by its fingerprint, where the
    first module was (else after the notebook / first dep); the ``code`` stage added first if missing; the
    generated sections rewritten. Then write the fingerprints. Returns what changed in dvc.yaml."""
    from ruamel.yaml import YAML

    path = Path(root) / "dvc.yaml"
    yaml = YAML()  # round trip: comments and order kept
    yaml.preserve_quotes = True
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)  # dvc.yaml's own style
    dvc = yaml.load(path.read_text(encoding="utf-8"))
    changes = check(root)
    for key, want in _sections_want(root).items():
        if key in changes:
            dvc[key] = want
    if CODE_STAGE not in dvc["stages"]:
        dvc["stages"].insert(0, CODE_STAGE, _code_stage())
    for name, body in _stage_bodies(dvc):
        if name not in changes:
            continue
        deps = body["deps"]
        want = CODE_STAGE_DEPS if name == CODE_STAGE else [fingerprint_path(name)]
        code = [i for i, d in enumerate(deps) if isinstance(d, str) and d.startswith((PACKAGE + "/", FINGERPRINTS))]
        at = code[0] if code else min(len(deps), 2)
        for i in reversed(code):
            del deps[i]
        for offset, dep in enumerate(d for d in want if d not in deps):
            deps.insert(at + offset, dep)
    with path.open("w", encoding="utf-8") as f:
        yaml.dump(dvc, f)
    write_fingerprints(root)
    return changes
