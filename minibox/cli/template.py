"""The Go-template subset `--format` takes, as Docker's: fields, json, range, if, index, join and a few more.

    {{.Name}}  {{.State.Pid}}  {{json .Config}}  {{index .Labels "app"}}  {{join .Args ","}}
    {{range .Mounts}}{{.Source}} {{end}}  {{range $k, $v := .NetworkSettings.Ports}}{{$k}}{{end}}
    {{if .State.Running}}up{{else}}down{{end}}  {{.Names | upper}}  {{printf "%s:%d" .Name 5}}
    table {{.ID}}\t{{.Names}}     (ps, images: a header row from the field names)

Values print as Go prints them: true/false, maps as map[k:v], lists as [a b]. A field that
is not there is an error naming it, as in Docker. Pure.
"""

from __future__ import annotations

import json
import re
from typing import Any

from minibox.errors import InvalidSpec, MiniboxError

_ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)
# `).Field` is one word: the field of what the parentheses gave ({{(index .X 0).HostPort}})
_WORD = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)(?:\.[A-Za-z0-9_.]+)?|\||:=|,|[^\s|(),]+')


class TemplateError(MiniboxError):
    """A template that parsed but could not run on this value (a missing field)."""


class Node:
    def __init__(self, kind: str, arg: Any = None):
        self.kind, self.arg = kind, arg
        self.body: list[Node] = []
        self.other: list[Node] = []
        self.names: list[str] = []


def parse(text: str) -> list[Node]:
    """The template as a tree; InvalidSpec naming what is wrong."""
    root: list[Node] = []
    stack: list[tuple[Node | None, list[Node]]] = [(None, root)]
    pos = 0
    for m in _ACTION.finditer(text):
        literal = text[pos:m.start()]
        if m.group(1):
            literal = literal.rstrip()
        stack[-1][1].append(Node("text", literal))
        pos = m.end()
        if m.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip())
        body = m.group(2)
        if body.startswith("/*"):
            continue
        words = _words(body, text)
        head = words[0] if words else ""
        if head in ("range", "if", "with"):
            node = Node(head)
            if head == "range" and ":=" in words:
                i = words.index(":=")
                node.names = [w for w in words[1:i] if w != ","]
                words = ["range"] + words[i + 1:]
            node.arg = _pipeline(words[1:], text)
            stack[-1][1].append(node)
            stack.append((node, node.body))
        elif head == "else":
            if len(stack) == 1:
                raise InvalidSpec(f'invalid --format "{text}": {{{{else}}}} outside range or if')
            stack[-1] = (stack[-1][0], stack[-1][0].other)
        elif head == "end":
            if len(stack) == 1:
                raise InvalidSpec(f'invalid --format "{text}": unexpected {{{{end}}}}')
            stack.pop()
        else:
            stack[-1][1].append(Node("print", _pipeline(words, text)))
    if len(stack) > 1:
        raise InvalidSpec(f'invalid --format "{text}": {{{{{stack[-1][0].kind}}}}} has no {{{{end}}}}')
    if "{{" in text[pos:] or "}}" in text[pos:]:
        raise InvalidSpec(f'invalid --format "{text}": unclosed action')
    stack[0][1].append(Node("text", text[pos:]))
    return root


def _words(body: str, text: str) -> list[str]:
    words = _WORD.findall(body)
    if "".join(words) != re.sub(r"\s+", "", body) and not any(w.startswith(('"', "`")) for w in words):
        raise InvalidSpec(f'invalid --format "{text}": cannot read "{body}"')
    return words


FUNCS = ("json", "index", "join", "len", "upper", "lower", "title", "printf", "print", "println", "split", "not",
         "eq", "ne", "and", "or", "truncate", "pad")


def _pipeline(words: list[str], text: str) -> list[list]:
    if not words:
        raise InvalidSpec(f'invalid --format "{text}": an empty action {{{{}}}}')
    cmds, _end, _path = _commands(words, 0, text, nested=False)
    return cmds


def _commands(words: list[str], i: int, text: str, nested: bool) -> tuple[list[list], int, str]:
    """A pipeline from words[i:]: its commands, where it ended, and (nested: it ends at a
    `)`) the field path after that `)`. A parenthesized pipeline is one argument, kept as
    ("(", commands, path)."""
    cmds: list[list] = []
    cur: list = []
    while i < len(words):
        w = words[i]
        if w == "|":
            cmds.append(cur)
            cur = []
            i += 1
        elif w == "(":
            inner, i, path = _commands(words, i + 1, text, nested=True)
            cur.append(("(", inner, path))
        elif w.startswith(")"):
            if not nested:
                raise InvalidSpec(f'invalid --format "{text}": unexpected ")"')
            cmds.append(cur)
            _check(cmds, text)
            return cmds, i + 1, w[1:]
        else:
            cur.append(w)
            i += 1
    if nested:
        raise InvalidSpec(f'invalid --format "{text}": unclosed "("')
    cmds.append(cur)
    _check(cmds, text)
    return cmds, i, ""


def _check(cmds: list[list], text: str) -> None:
    for c in cmds:
        if not c:
            raise InvalidSpec(f'invalid --format "{text}": an empty command in a pipeline')
        first = c[0]
        if isinstance(first, tuple):
            continue  # a parenthesized pipeline, checked when it was read
        if not (first.startswith((".", "$", '"', "`")) or first in FUNCS or _is_number(first)
                or first in ("true", "false")):
            raise InvalidSpec(f'invalid --format "{text}": function "{first}" not defined (use one of '
                              f'{", ".join(FUNCS)})')


def _is_number(w: str) -> bool:
    return bool(re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", w))


def render(nodes: list[Node], data: Any) -> str:
    return "".join(_run(nodes, data, {"$": data}))


def _run(nodes: list[Node], dot: Any, var: dict) -> list[str]:
    out: list[str] = []
    for n in nodes:
        if n.kind == "text":
            out.append(n.arg)
        elif n.kind == "print":
            out.append(show(_eval(n.arg, dot, var)))
        elif n.kind == "if":
            out += _run(n.body if _truth(_eval(n.arg, dot, var)) else n.other, dot, var)
        elif n.kind == "with":
            v = _eval(n.arg, dot, var)
            out += _run(n.body, v, var) if _truth(v) else _run(n.other, dot, var)
        elif n.kind == "range":
            v = _eval(n.arg, dot, var)
            items = sorted(v.items()) if isinstance(v, dict) else list(enumerate(v or ()))
            if not items:
                out += _run(n.other, dot, var)
            for k, item in items:
                inner = dict(var)
                if len(n.names) == 1:
                    inner[n.names[0]] = item
                elif len(n.names) == 2:
                    inner[n.names[0]], inner[n.names[1]] = k, item
                out += _run(n.body, item, inner)
    return out


def _eval(cmds: list[list[str]], dot: Any, var: dict) -> Any:
    result: Any = None
    for i, cmd in enumerate(cmds):
        args = [_arg(w, dot, var) for w in cmd[1:]]
        if i:
            args.append(result)
        head = cmd[0]
        result = _call(head, args) if isinstance(head, str) and head in FUNCS else _arg(head, dot, var)
    return result


def _arg(w, dot: Any, var: dict) -> Any:
    if isinstance(w, tuple):  # ("(", pipeline, field path)
        return _field(_eval(w[1], dot, var), w[2], f"({w[2]})")
    if w.startswith('"'):
        return json.loads(w)
    if w.startswith("`"):
        return w[1:-1]
    if _is_number(w):
        return float(w) if "." in w else int(w)
    if w in ("true", "false"):
        return w == "true"
    if w == ".":
        return dot
    if w.startswith("$"):
        name, _, path = w.partition(".")
        if name not in var:
            raise TemplateError(f'template: undefined variable "{name}"')
        return _field(var[name], path, w)
    return _field(dot, w[1:], w)


def _field(value: Any, path: str, whole: str) -> Any:
    for name in [p for p in path.split(".") if p]:
        if isinstance(value, dict) and name in value:
            value = value[name]
        else:
            raise TemplateError(f'template: executing at <{whole}>: map has no entry for key "{name}"')
    return value


def _call(name: str, args: list) -> Any:
    try:
        if name == "json":
            return json.dumps(args[0], separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e") \
                .replace("&", "\\u0026")
        if name == "index":
            v = args[0]
            for k in args[1:]:
                v = v[k] if isinstance(v, dict) else v[int(k)]
            return v
        if name == "join":
            return args[1].join(show(x) for x in (args[0] or ()))
        if name == "split":
            return args[0].split(args[1])
        if name == "len":
            return len(args[0] or ())
        if name in ("upper", "lower", "title"):
            return getattr(show(args[0]), name)()
        if name == "printf":
            fmt = re.sub(r"%v|%q", lambda m: "%s" if m.group() == "%v" else "%r", args[0])
            return fmt % tuple(show(a) if isinstance(a, (dict, list, bool, type(None))) else a for a in args[1:])
        if name in ("print", "println"):
            return " ".join(show(a) for a in args) + ("\n" if name == "println" else "")
        if name == "not":
            return not _truth(args[0])
        if name == "eq":
            return any(args[0] == a for a in args[1:])
        if name == "ne":
            return args[0] != args[1]
        if name == "and":
            return all(_truth(a) for a in args)
        if name == "or":
            return any(_truth(a) for a in args)
        if name == "truncate":
            return show(args[0])[:int(args[1])]
        if name == "pad":
            return show(args[0]).ljust(int(args[1]))
    except (IndexError, KeyError, TypeError, ValueError) as e:
        raise TemplateError(f"template: error calling {name}: {e}") from None
    raise TemplateError(f'template: function "{name}" not defined')  # pragma: no cover - refused at parse


def _truth(v: Any) -> bool:
    return bool(v)


def show(v: Any) -> str:
    """A value as Go's fmt prints it."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{show(x)}" for k, x in sorted(v.items())) + "]"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(show(x) for x in v) + "]"
    return str(v)


class Format:
    """A --format value: "json", "table ...", or a template, parsed once."""

    def __init__(self, text: str):
        self.text = text
        self.table = text.startswith("table")
        body = text[5:].lstrip() if self.table else text
        self.nodes = parse(body.replace("\\t", "\t").replace("\\n", "\n"))

    def line(self, data: Any) -> str:
        return render(self.nodes, data)

    def header(self, names: dict[str, str]) -> str:
        """The header row of `table`: each {{.Field}} printed as its column name."""
        heads = {k: v for k, v in names.items()}
        return render(self.nodes, _Header(heads))


class _Header(dict):
    """Looks up any field as its column name (upper-cased field, or Docker's heading)."""

    def __init__(self, names: dict[str, str]):
        super().__init__()
        self.names = names

    def __contains__(self, key) -> bool:
        return True

    def __getitem__(self, key):
        return self.names.get(key, key.upper())
