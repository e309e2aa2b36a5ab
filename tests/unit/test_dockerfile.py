"""plan.dockerfile: the Dockerfile reference's parsing rules, checked without building anything."""

import pytest

from minibox.errors import InvalidSpec
from minibox.plan import dockerfile as df


def steps(text, **args):
    return [(i.kind, i.args) for s in df.parse(text, args).stages for i in s.steps]


def test_continuations_comments_and_case():
    text = "from busybox\n# a comment\nrun echo a \\\n  # dropped inside a continuation\n  && echo b\n\ncmd [\"sh\"]\n"
    assert steps(text) == [("FROM", "busybox"), ("RUN", "echo a   && echo b"), ("CMD", '["sh"]')]


def test_the_escape_directive_and_syntax_note():
    parsed = df.parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\nRUN echo a `\n  b\n")
    assert [i.args for i in parsed.stages[0].steps][1] == "echo a   b"
    assert "syntax" in parsed.notes[0]
    # a directive after the first instruction is a comment
    assert steps("FROM busybox\n# escape=`\nRUN a \\\n b\n")[1] == ("RUN", "a  b")


def test_arg_and_env_substitution_where_docker_does_it():
    text = ("ARG BASE=busybox\nFROM $BASE\nARG V=1\nENV A=x B=${V}y\nWORKDIR /w/${A}\nLABEL l=${MISSING:-dflt}\n"
            "LABEL m=${A:+set}\nRUN echo $A\nCOPY \\$A /b\n")
    got = steps(text, V="2")
    assert got[0] == ("FROM", "busybox")
    assert ("ENV", "A=x B=2y") in got and ("WORKDIR", "/w/x") in got
    assert ("LABEL", "l=dflt") in got and ("LABEL", "m=set") in got
    assert ("RUN", "echo $A") in got  # RUN is its shell's to expand
    assert ("COPY", "$A /b") in got


def test_a_global_arg_is_for_from_only_unless_declared_again():
    text = "ARG TAG=1\nFROM busybox:$TAG\nENV T=${TAG}\nARG TAG\nENV U=${TAG}\n"
    assert steps(text)[1:] == [("ENV", "T="), ("ARG", "TAG=1"), ("ENV", "U=1")]


def test_stages_and_targets():
    parsed = df.parse("FROM busybox AS Build\nRUN true\nFROM scratch\nCOPY --from=build /a /a\n")
    assert [(s.base, s.name, s.index) for s in parsed.stages] == [("busybox", "build", 0), ("scratch", "", 1)]
    assert parsed.stage("build") == 0 and parsed.stage("") == 1
    assert parsed.stages[1].steps[1].flag("from") == "build"
    with pytest.raises(InvalidSpec, match='target stage "nope"'):
        parsed.stage("nope")


def test_exec_and_shell_forms():
    run = df.Instruction(1, "RUN", '["echo", "a b"]')
    assert run.exec_form() == ("echo", "a b")
    assert df.Instruction(1, "RUN", "[not json").exec_form() is None


@pytest.mark.parametrize("text, message", [
    ("FROM busybox\nFOO bar\n", "line 2: unknown instruction: FOO"),
    ("RUN true\n", "line 1: RUN before FROM"),
    ("# only a comment\n", "has no FROM"),
    ("FROM busybox\nONBUILD RUN true\n", "ONBUILD is not supported"),
    ("FROM busybox\nCOPY --own=1 a b\n", "COPY --own=1: unknown flag"),
    ("ARG X\nFROM $X\n", "base name ($X) should not be blank"),
    ("FROM busybox\nENV\n", "ENV needs arguments"),
    ("FROM busybox\nARG 1x\n", 'ARG "1x"'),
])
def test_bad_dockerfiles_are_one_line_naming_the_line(text, message):
    with pytest.raises(InvalidSpec, match=message.replace("(", r"\(").replace(")", r"\)").replace("$", r"\$")):
        df.parse(text)


def test_unused_build_args_are_a_warning_as_dockers():
    assert "[Warning] One or more build-args [NOPE]" in df.parse("FROM busybox\n", {"NOPE": "1"}).notes[0]
