"""The architecture, checked from the source: no import circles, and each layer imports only what it may.

    plan/      pure: nothing effectful (only plan, model, errors, config, value)
    runtime/   and net/ never import each other, lifecycle, launch or the teaching tools
    teach/     sits on the core: nothing outside it and the CLI imports it
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "minibox"


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (PKG / rel).with_suffix(".py").exists() or (PKG / rel).is_dir()


def imports() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("minibox"):
                subs = [f"{node.module}.{a.name}" for a in node.names]
                real = [s for s in subs if is_module(s)]
                deps.update(real)
                if len(real) < len(subs):
                    deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("minibox"))
        out[module_name(path)] = deps
    return {m: {d for d in ds if d in out and d != m} for m, ds in out.items()}


GRAPH = imports()


def test_no_import_circles():
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(GRAPH[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(path[path.index(d):] + [d]))
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def violations(layer: str, allowed) -> list[tuple[str, str]]:
    return [(m, d) for m, ds in GRAPH.items() if m.startswith(layer) for d in ds if not allowed(d)]


def test_plan_is_pure():
    pure = ("minibox.plan", "minibox.model", "minibox.errors", "minibox.config", "minibox.value")
    assert violations("minibox.plan", lambda d: d.startswith(pure)) == []


def test_runtime_and_net_stay_apart():
    above = ("minibox.lifecycle", "minibox.launch", "minibox.teach", "minibox.cli", "minibox.gc")
    assert violations("minibox.runtime", lambda d: not d.startswith(("minibox.net",) + above)) == []
    assert violations("minibox.net", lambda d: not d.startswith(("minibox.runtime",) + above)) == []


def test_teaching_sits_on_the_core():
    users = [(m, d) for m, ds in GRAPH.items() for d in ds
             if d.startswith("minibox.teach") and not m.startswith(("minibox.teach", "minibox.cli"))]
    assert users == []


def test_modules_stay_small():
    big = {module_name(p): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > 420}
    assert big == {}


def test_each_module_states_its_responsibility():
    for path in PKG.rglob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and doc.strip(), f"{path} has no docstring"
        assert doc.splitlines()[0].rstrip().endswith((".", ":")), f"{path}: the first line is one sentence"
