"""The architecture, checked from the source: no import circles, each layer imports only what it may, and only the command lines print.

    plan/      pure: nothing effectful (only plan, model, errors, config, value)
    fs/        paths in a root and safe copies: the ground floor only
    image/     never imports runtime/ (fs/ has what both need)
    runtime/   and net/ never import each other, the engine or the teaching tools
    engine/    never imports the command lines or the teaching tools
    teach/     sits on the core: nothing outside it and the CLI imports it
    printing   only cli/, teach/, oci/, cni/ and the entry points write to stdout or stderr;
               the rest says things through minibox.notes
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
    above = ("minibox.engine", "minibox.teach", "minibox.cli")
    assert violations("minibox.runtime", lambda d: not d.startswith(("minibox.net",) + above)) == []
    assert violations("minibox.net", lambda d: not d.startswith(("minibox.runtime",) + above)) == []


def test_fs_is_on_the_ground_floor_and_images_do_not_reach_into_the_runtime():
    ground = ("minibox.fs", "minibox.linux", "minibox.errors", "minibox.value", "minibox.config")
    assert violations("minibox.fs", lambda d: d.startswith(ground)) == []
    assert violations("minibox.image", lambda d: not d.startswith("minibox.runtime")) == []


def test_the_engine_does_not_reach_up():
    assert violations("minibox.engine", lambda d: not d.startswith(("minibox.cli", "minibox.teach"))) == []


ENTRY = ("minibox.cli", "minibox.teach", "minibox.oci", "minibox.cni", "minibox.__main__", "minibox.entry",
         "minibox.notes")


def _prints(path: Path) -> list[int]:
    """Lines that print: print(), or sys.stdout / sys.stderr used (but to flush them, as a fork
    does), outside `if __name__ == "__main__":`."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            skip |= {n.lineno for n in ast.walk(node) if hasattr(n, "lineno")}
    flushes = {id(n.func.value) for n in ast.walk(tree)
               if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "flush"}
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip or id(node) in flushes:
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            out.append(node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr") and \
                isinstance(node.value, ast.Name) and node.value.id == "sys":
            out.append(node.lineno)
    return out


def test_nothing_below_the_command_lines_prints():
    found = {module_name(p): lines for p in PKG.rglob("*.py")
             if not module_name(p).startswith(ENTRY) and (lines := _prints(p))}
    assert found == {}


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
