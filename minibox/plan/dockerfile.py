"""A Dockerfile as stages of checked instructions, with ARG and ENV substituted as Docker's reference says: pure, no file is read here.

What the reference fixes, and this follows: parser directives (`# escape=`, `# syntax=`)
only at the very top; a line ending in the escape character continues on the next, and
comment lines inside a continuation are dropped; instructions are case-insensitive;
`$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alternative}` are replaced in FROM, ADD,
COPY, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and ARG, not in RUN, CMD or
ENTRYPOINT (their shell does that, with the ARGs in its environment); an ARG before the
first FROM is for FROM lines only, unless a stage declares it again.

No parser of Dockerfiles is packaged for this project's Python (PyPI's `dockerfile`, which
wraps moby's Go parser, is not in the index this project installs from; Debian 12 has no
Python one), so this one is written to the reference, and its rules are unit-tested.
"""

from __future__ import annotations

import json
import re

from minibox.errors import InvalidSpec
from minibox.value import Value

INSTRUCTIONS = ("FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
                "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL")
SUBSTITUTED = {"FROM", "ADD", "COPY", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR", "ARG"}
FLAGS = {"FROM": ("platform",), "COPY": ("from", "chown", "chmod"), "ADD": ("chown", "chmod"), "RUN": (),
         "HEALTHCHECK": ("interval", "timeout", "start-period", "retries")}
NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
VAR_RE = re.compile(r"\$(?:\{([a-zA-Z_][a-zA-Z0-9_]*)(?::([-+])([^}]*))?\}|([a-zA-Z_][a-zA-Z0-9_]*))")


class Instruction(Value):
    line: int  # where it starts in the Dockerfile, for messages
    kind: str  # upper case: RUN, COPY, ...
    args: str  # the rest of the line, continuations joined, flags removed, variables replaced where Docker does
    flags: tuple[tuple[str, str], ...] = ()  # --from=builder, --chown=1:1, ...
    source: str = ""  # the instruction as written (continuations joined): what `Step N/M :` prints

    def flag(self, name: str) -> str:
        return dict(self.flags).get(name, "")

    def exec_form(self) -> tuple[str, ...] | None:
        """The JSON array form (RUN ["a", "b"]), or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            parsed = json.loads(text)
        except ValueError:
            return None  # Docker's rule: not valid JSON is the shell form
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            return tuple(parsed)
        return None


class Stage(Value):
    base: str  # an image reference, "scratch", or an earlier stage's name or index
    name: str  # AS NAME, lower case ("" without)
    index: int
    steps: tuple[Instruction, ...]  # FROM first


class Dockerfile(Value):
    stages: tuple[Stage, ...]
    notes: tuple[str, ...] = ()  # what was read but not used (# syntax=)

    def stage(self, target: str) -> int:
        """The index of the stage --target names (the last one without)."""
        if not target:
            return len(self.stages) - 1
        for s in self.stages:
            if s.name == target.lower():
                return s.index
        raise InvalidSpec(f'target stage "{target}" could not be found (stages: '
                          f'{", ".join(s.name for s in self.stages if s.name) or "none named"})')


def parse(text: str, build_args: dict[str, str] | None = None) -> Dockerfile:
    """The whole Dockerfile, checked: InvalidSpec names the line of the first problem."""
    build_args = dict(build_args or {})
    escape, notes, lines = _directives(text.splitlines())
    logical = _logical_lines(lines, escape)
    stages: list[Stage] = []
    steps: list[Instruction] = []
    global_args: dict[str, str | None] = {}  # ARG before the first FROM
    scope: dict[str, str] = {}  # what substitution sees in the current stage: its ARGs and ENVs
    used_args: set[str] = set()
    for number, raw in logical:
        word, _, rest = raw.strip().partition(" ")
        kind = word.upper()
        if kind not in INSTRUCTIONS:
            raise InvalidSpec(f'Dockerfile line {number}: unknown instruction: {word} (the instructions are '
                              f'{", ".join(INSTRUCTIONS)})')
        if not stages and not steps and kind not in ("FROM", "ARG"):
            raise InvalidSpec(f"Dockerfile line {number}: {kind} before FROM: a Dockerfile must begin with FROM "
                              "(only ARG may come before it)")
        flags, rest = _flags(kind, rest.strip(), number)
        if kind in SUBSTITUTED:  # FROM, and an ARG before it, see the global ARGs; the rest their stage's
            outside = kind == "FROM" or (not stages and not steps)
            seen = {k: v for k, v in global_args.items() if v is not None} if outside else scope
            rest = substitute(rest, seen, number)
            flags = tuple((k, substitute(v, seen, number)) for k, v in flags)
        if kind == "ONBUILD":
            raise InvalidSpec(f"Dockerfile line {number}: ONBUILD is not supported by minibox build")
        if kind == "ARG":
            name, eq, default = rest.partition("=")
            if not NAME_RE.fullmatch(name.strip()):
                raise InvalidSpec(f'Dockerfile line {number}: ARG "{rest}": give NAME or NAME=DEFAULT')
            name = name.strip()
            if not stages and not steps:
                global_args[name] = build_args.get(name, default if eq else None)
                used_args.add(name)
                continue
            used_args.add(name)
            value = build_args.get(name, global_args.get(name) if not eq else default)
            if value is not None:
                scope[name] = value
            steps.append(Instruction(number, kind, f"{name}={value}" if value is not None else name, flags, raw))
            continue
        if kind == "FROM":
            if steps:
                stages.append(_stage(steps, len(stages)))
            steps = []
            scope = {}
            words = rest.split()
            if not words:
                raise InvalidSpec(f"Dockerfile line {number}: base name ({raw.split(None, 1)[-1]}) should not be "
                                  "blank (an ARG without a value?)")
            if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
                raise InvalidSpec(f'Dockerfile line {number}: FROM "{rest}": give FROM IMAGE [AS NAME]')
            if len(words) == 3 and not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_.-]*", words[2]):
                raise InvalidSpec(f'Dockerfile line {number}: invalid stage name "{words[2]}"')
        if kind == "ENV":
            for k, v in pairs(rest, f"Dockerfile line {number}: ENV"):
                scope[k] = v
        if not rest and kind not in ("RUN",):
            raise InvalidSpec(f"Dockerfile line {number}: {kind} needs arguments")
        steps.append(Instruction(number, kind, rest, flags, raw.strip()))
    if steps:
        stages.append(_stage(steps, len(stages)))
    if not stages:
        raise InvalidSpec("the Dockerfile has no FROM: a Dockerfile must begin with FROM IMAGE (or FROM scratch)")
    unused = sorted(set(build_args) - used_args)
    if unused:
        notes.append(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed")
    return Dockerfile(tuple(stages), tuple(notes))


def _stage(steps: list[Instruction], index: int) -> Stage:
    words = steps[0].args.split()
    return Stage(base=words[0], name=words[2].lower() if len(words) == 3 else "", index=index, steps=tuple(steps))


def _directives(lines: list[str]) -> tuple[str, list[str], list[tuple[int, str]]]:
    """The escape character and notes from the parser directives at the top, and the numbered lines."""
    escape, notes = "\\", []
    numbered = list(enumerate(lines, 1))
    i = 0
    while i < len(numbered):
        m = re.fullmatch(r"#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*", numbered[i][1])
        if not m:
            break
        key = m.group(1).lower()
        if key == "escape":
            if m.group(2) not in ("\\", "`"):
                raise InvalidSpec(f'Dockerfile line {numbered[i][0]}: invalid escape "{m.group(2)}": use \\ or `')
            escape = m.group(2)
        elif key == "syntax":
            notes.append(f"# syntax={m.group(2)} ignored: minibox builds with its own builder")
        i += 1
    return escape, notes, numbered


def _logical_lines(lines: list[tuple[int, str]], escape: str) -> list[tuple[int, str]]:
    """Continuations joined; blank lines and comments dropped (inside a continuation too)."""
    out: list[tuple[int, str]] = []
    current, start = "", 0
    for number, line in lines:
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and (stripped.startswith("#") or not stripped):
            continue  # a comment or an empty line inside a continuation
        if not current:
            start = number
        if stripped.endswith(escape) and not stripped.endswith(escape * 2):
            current += line.rstrip()[:-1]
            continue
        current += line
        out.append((start, current.strip()))
        current = ""
    if current.strip():
        out.append((start, current.strip()))
    return out


def _flags(kind: str, rest: str, number: int) -> tuple[tuple[tuple[str, str], ...], str]:
    """Leading --name=value flags of the instructions that take them; others refused."""
    flags = []
    while rest.startswith("--") and kind in FLAGS:
        word, _, rest = rest.partition(" ")
        name, eq, value = word[2:].partition("=")
        if name not in FLAGS[kind]:
            allowed = ", ".join(f"--{f}" for f in FLAGS[kind]) or "none"
            raise InvalidSpec(f"Dockerfile line {number}: {kind} {word}: unknown flag (minibox build takes: {allowed})")
        flags.append((name, value if eq else "true"))
        rest = rest.strip()
    return tuple(flags), rest


def substitute(text: str, scope: dict[str, str], number: int = 0) -> str:
    """$VAR, ${VAR}, ${VAR:-default}, ${VAR:+alternative}; \\$ is a literal $."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        m = VAR_RE.match(text, i) if text[i] == "$" else None
        if m is None:
            if text.startswith("${", i):
                raise InvalidSpec(f'Dockerfile line {number}: bad substitution in "{text}"')
            out.append(text[i])
            i += 1
            continue
        name = m.group(1) or m.group(4)
        value = scope.get(name)
        if m.group(2) == "-":
            value = value if value else m.group(3)
        elif m.group(2) == "+":
            value = m.group(3) if value else ""
        out.append(value or "")
        i = m.end()
    return "".join(out)


def pairs(value: str, where: str) -> list[tuple[str, str]]:
    """ENV's and LABEL's `K=V K2="v 2"`, or the old one-pair form `K V` (a Dockerfile's, and
    commit's and import's --change): one line naming `where` for anything else."""
    import shlex

    try:
        words = shlex.split(value)
    except ValueError as e:
        raise InvalidSpec(f'{where} "{value}": {e}') from None
    if words and "=" not in words[0]:
        parts = value.split(None, 1)
        return [(parts[0], parts[1] if len(parts) > 1 else "")]
    out = []
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise InvalidSpec(f'{where} "{value}": use KEY=VALUE')
        out.append((k, v))
    return out
