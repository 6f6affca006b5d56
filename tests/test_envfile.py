"""`.env` documents: byte-exact round trips, values as python-dotenv and Docker Compose read them, edits that
touch one value only, and malformed lines that are kept and reported instead of "fixed"."""

from __future__ import annotations

import io
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values
from dotenv.parser import parse_stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaffold import composeenv
from scaffold.envfile import EnvDocument, EnvProblem
from scaffold.errors import EnvFileError
from tests.helpers.privileges import as_unprivileged_user
from tests.helpers.requirements import compose_available, compose_binary, require


def dotenv_reads(text: str) -> dict[str, str | None]:
    """What python-dotenv itself reads from `text` (literal values: no `${}` interpolation)."""
    return dict(dotenv_values(stream=io.StringIO(text, newline=""), interpolate=False))


def statements(text: str) -> list[str]:
    """python-dotenv's statements of `text`, as the exact text of each."""
    return [b.original.string for b in parse_stream(io.StringIO(text, newline=""))]


def problems_by_line(doc: EnvDocument) -> dict[int, list[EnvProblem]]:
    found: dict[int, list[EnvProblem]] = {}
    for problem in doc.problems():
        found.setdefault(problem.line, []).append(problem)
    return found


# Odd files a user may really have. Every one must render back byte for byte and read like python-dotenv.
CORPUS: dict[str, str] = {
    "empty": "",
    "only newline": "\n",
    "blank lines and spaces": "\n\n   \n\t\n",
    "comments": "# a comment\n#no space\n   # indented\nA=1\n",
    "no trailing newline": "A=1\nB=2",
    "crlf": "A=1\r\nB='two'\r\n# c\r\n",
    "old mac cr": "A=1\rB=2\r",
    "mixed endings": "A=1\r\nB=2\nC=3\r",
    "tabs": "\tA=1\t# tab comment\nB\t=\t2\n",
    "export": "export A=1\nexport  B='x y'\n",
    "quotes of every kind": 'S=\'single\'\nD="double"\nE=\'it\\\'s\'\nF="say \\"hi\\""\nG=\'\'\nH=""\n',
    "escapes in double quotes": 'A="tab\\tnew\\nline\\\\"\nB="\\u00e9\\x41"\n',
    "inline comments": "A=1 # c\nB='2' # c\nC=\"3\"#c\nD=a#b\nE=a #b\n",
    "empty values": "A=\nB=   \nC= # comment-looking value\n",
    "key without value": "A\nB=\nA\n",
    "unicode": "NAME=Jürgen\nCITY='Zürich ✓'\nEMOJI=\"😀\"\n",
    "bom": "\ufeffA=1\nB=2\n",
    "bom then comment": "\ufeff# header\nA=1\n",
    "multiline double quoted": 'A="line one\nline two"\nB=2\n',
    "multiline single quoted": "A='one\ntwo'\nB=3\n",
    "unterminated double quote": 'A="never closed\nB=2\n',
    "unterminated single quote": "A='never closed\nB=2\n",
    "junk after quote": "A='x' junk\nB=2\n",
    "yaml style": "A: 1\nB=2\n",
    "space in key": "MY KEY=1\nB=2\n",
    "invalid names": "1X=1\nMY-KEY=2\nmy.key=3\n'Q'=4\n",
    "duplicates": "A=1\nB=2\nA=3\nA=4\n",
    "only equals": "=\n==\n=x\n",
    "hash only": "#\n##\n",
    "trailing whitespace": "A=1   \nB='2'   \n   ",
    "dollar": "A=$HOME\nB='${HOME}'\nC=\"$$\"\n",
    "backslash endings": "A=x\\\nB='y\\\\'\nC=\"z\\\\\"\n",
    "weird whitespace": "A=\u00a0x\u00a0\nB=\x0bx\x0c\n\u2028C=1\n",
}


@pytest.mark.parametrize("text", CORPUS.values(), ids=CORPUS.keys())
def test_corpus_round_trips_byte_for_byte_and_reads_like_python_dotenv(text: str) -> None:
    doc = EnvDocument.parse(text)
    assert doc.render() == text
    expected = dotenv_reads(text)
    keys = doc.keys()
    assert keys == list(expected)
    assert {key: doc.get(key) for key in keys} == expected
    line_count = text.count("\n") + text.count("\r") - text.count("\r\n") + 1
    assert all(1 <= p.line <= line_count for p in doc.problems())


# Fragments that build env files full of the constructs above, so hypothesis explores their combinations.
_KEYS = ["A", "B", "KEY", "export A", "export  B", "'A'", "A ", " A", "\tB", "1X", "MY-KEY", "\ufeffA", ""]
_SEPARATORS = ["=", " = ", "=\t", ":", " ", ""]
_VALUE_CHARS = "ab1 \t#'\"\\$=é\u00a0"
_COMMENTS = ["", " # pinned", "#c", "\t# x", "  # note"]
_ENDINGS = ["\n", "\n", "\r\n", "\r", ""]


@st.composite
def env_texts(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["statement", "statement", "comment", "blank"]))
        if kind == "comment":
            line = "#" + draw(st.text(_VALUE_CHARS, max_size=5))
        elif kind == "blank":
            line = draw(st.sampled_from(["", " ", "\t"]))
        else:
            raw = draw(st.text(_VALUE_CHARS, max_size=6))
            value = draw(st.sampled_from([raw, f"'{raw}'", f'"{raw}"', raw.strip()]))
            line = draw(st.sampled_from(_KEYS)) + draw(st.sampled_from(_SEPARATORS)) + value
            line += draw(st.sampled_from(_COMMENTS))
        lines.append(line + draw(st.sampled_from(_ENDINGS)))
    return "".join(lines)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), env_texts()))
def test_any_text_round_trips_and_reads_like_python_dotenv(text: str) -> None:
    doc = EnvDocument.parse(text)
    assert doc.render() == text
    expected = dotenv_reads(text)
    keys = doc.keys()
    assert keys == list(expected)
    assert {key: doc.get(key) for key in keys} == expected
    doc.problems()  # never raises, whatever the text


@st.composite
def texts_setting(draw: st.DrawFn, key: str) -> str:
    """An env text that (usually) sets `key` on a well-formed line somewhere among odd lines."""
    before, after = draw(env_texts()), draw(env_texts())
    if draw(st.booleans()) and before and not before.endswith(("\n", "\r")):
        before += "\n"
    raw = draw(st.text("ab1 #$é\\", max_size=6))
    value = draw(st.sampled_from([raw.replace(" ", ""), f"'{raw}'", f'"{raw}"']))
    indent = draw(st.sampled_from(["", "  ", "\t"]))
    line = indent + key + draw(st.sampled_from(["=", " = ", "=  "])) + value
    line += draw(st.sampled_from(_COMMENTS)) + draw(st.sampled_from(_ENDINGS))
    return before + line + after


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(["A", "B", "KEY", "NEW"]))
def test_set_changes_only_the_value_asked_for(data: st.DataObject, key: str) -> None:
    text = data.draw(st.one_of(env_texts(), texts_setting(key)), label="text")
    value = data.draw(st.text(st.characters(blacklist_characters="\r\n\0"), max_size=12), label="value")
    doc = EnvDocument.parse(text)
    try:
        changed = doc.set(key, value)
    except EnvFileError:
        assert doc.render() == text  # a refused edit changes nothing
        return
    after = doc.render()
    assert changed == (after != text)
    before_values, after_values = dotenv_reads(text), dotenv_reads(after)
    assert after_values[key] == value
    assert EnvDocument.parse(after).get(key) == value
    assert {k: v for k, v in after_values.items() if k != key} == {
        k: v for k, v in before_values.items() if k != key
    }
    if key in before_values:  # edited in place: every other statement is byte-identical
        old, new = statements(text), statements(after)
        assert len(old) == len(new)
        differing = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
        assert len(differing) == (1 if changed else 0)
    else:  # appended: the existing text is kept as a prefix
        assert after.startswith(text)


# -- editing in place ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "value", "expected"),
    [
        ("A=old\n", "new", "A=new\n"),
        ("A=old # pinned\n", "new", "A=new # pinned\n"),
        ("A=old\t# tab comment\n", "new", "A=new\t# tab comment\n"),
        ("  A='old'  # keep me\n", "new", "  A='new'  # keep me\n"),
        ('A="old"\n', "new", 'A="new"\n'),
        ('A="old"#c\n', "a b", 'A="a b"#c\n'),
        ("A = old\n", "new", "A = new\n"),
        ("A=\n", "new", "A=new\n"),
        ("A= \n", "x y", "A= 'x y'\n"),
        ("A=old\r\n", "new", "A=new\r\n"),
        ("A=old", "new", "A=new"),
        ("A=old\n", "has space", "A='has space'\n"),
        ("A=old\n", "it's", 'A="it\'s"\n'),
        ("A='old'\n", "it's", 'A="it\'s"\n'),
        ('A="old"\n', "$HOME", "A='$HOME'\n"),
        ("A='old'\n", "back\\\\slash", 'A="back\\\\\\\\slash"\n'),
        ('A="multi\nline"\nB=2\n', "one", 'A="one"\nB=2\n'),
    ],
)
def test_set_replaces_only_the_value_keeping_indentation_quoting_and_comment(
    line: str, value: str, expected: str
) -> None:
    text = f"# header\nBEFORE=1\n{line}" + ("" if not line.endswith("\n") else "AFTER=2\n")
    doc = EnvDocument.parse(text)
    assert doc.set("A", value) is True
    assert doc.render() == text.replace(line, expected, 1)
    assert dotenv_reads(doc.render())["A"] == value


def test_set_with_the_current_value_changes_nothing() -> None:
    text = "A='same'   # pinned\nB=2\n"
    doc = EnvDocument.parse(text)
    assert doc.set("A", "same") is False
    assert doc.render() == text


def test_set_edits_the_last_duplicate_because_that_one_wins() -> None:
    doc = EnvDocument.parse("A=first\nB=2\nA=second # mine\n")
    assert doc.set("A", "third") is True
    assert doc.render() == "A=first\nB=2\nA=third # mine\n"
    assert dotenv_reads(doc.render())["A"] == "third"


# -- appending -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "NEW=v\n"),
        ("A=1\n", "A=1\nNEW=v\n"),
        ("A=1", "A=1\nNEW=v\n"),
        ("# only a comment", "# only a comment\nNEW=v\n"),
        ("A=1\r\nB=2\r\n", "A=1\r\nB=2\r\nNEW=v\r\n"),
        ("A=1\r\nB=2", "A=1\r\nB=2\r\nNEW=v\r\n"),
        ("A=1\n\n\n", "A=1\n\n\nNEW=v\n"),
    ],
)
def test_set_appends_a_missing_key_with_the_files_own_line_ending(text: str, expected: str) -> None:
    doc = EnvDocument.parse(text)
    assert doc.set("NEW", "v") is True
    assert doc.render() == expected


def test_set_appends_comment_lines_before_a_new_key() -> None:
    doc = EnvDocument.parse("A=1\n")
    doc.set("NEW", "v", comment="generated by scaffold\n\nkeep it secret")
    assert doc.render() == "A=1\n# generated by scaffold\n#\n# keep it secret\nNEW=v\n"
    assert dotenv_reads(doc.render()) == {"A": "1", "NEW": "v"}


def test_comment_is_ignored_when_the_key_exists() -> None:
    doc = EnvDocument.parse("NEW=old\n")
    doc.set("NEW", "v", comment="not added")
    assert doc.render() == "NEW=v\n"


# -- values both readers read back exactly -----------------------------------------------------------------

TRICKY_VALUES = [
    "",
    "plain",
    "user@example.com",
    "10.9.0.0/28,fd00::/64",
    "a=b==c",
    "with space",
    " leading space",
    "trailing space ",
    "a #not a comment",
    "a\t#tab hash",
    "#starts with hash",
    "x#y",
    "$HOME",
    "${HOME}",
    "$$",
    "pa$$word",
    "$(id)",
    "it's",
    'say "hi"',
    "both ' and \"",
    "back\\slash",
    "double\\\\backslash",
    "ends with backslash\\",
    "\\",
    "\\'",
    '\\"',
    "\\n not a newline",
    "\\t\\0\\x41",
    "it's $5",
    "$x'y",
    "üñíçødé ✓",
    "漢字",
    "emoji 😀",
    "tab\there",
    "\u00a0nbsp around\u00a0",
    "semi;colon&amp|pipe<>",
    "`backtick`",
    "{}[]()!*?~%^",
    "'",
    '"',
    "'quoted'",
    '"quoted"',
    "=",
    "-dash",
    "a\x0bvertical\x0cfeed",
]
# These mix `$` (Docker Compose interpolates it everywhere but in single quotes) with backslashes the two
# parsers read differently inside single quotes: no spelling reads back the same in both, so set refuses.
UNREPRESENTABLE_VALUES = ["$x\\\\y", "$x\\'y", "it's $5\\", " $\\"]
# The quoting style of the line being edited: set keeps it when the value allows it.
STARTING_LINES = ["{key}=placeholder", "{key}='placeholder'", '{key}="placeholder"', ""]


def edited_document(values: list[str]) -> tuple[EnvDocument, dict[str, str]]:
    """A document where each value was `set` on a line of a different quoting style (or appended)."""
    keys = {f"SCAFFOLD_RT_{i:04d}": value for i, value in enumerate(values)}
    start = [STARTING_LINES[i % len(STARTING_LINES)].format(key=key) for i, key in enumerate(keys)]
    doc = EnvDocument.parse("".join(line + "\n" for line in start if line))
    for key, value in keys.items():
        doc.set(key, value)
    return doc, keys


def random_values(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = [*"aZ09 _-.=:/@+,#$'\"\\`{}()!*?;&|<>~%^[]\t", "é", "漢", "😀", "\x0b", "\x85", "\xa0"]
    values = []
    while len(values) < count:
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 10)))
        try:
            EnvDocument.parse("").set("K", value)
        except EnvFileError:
            continue  # the refusal rule is tested on its own
        values.append(value)
    return values


def test_tricky_values_read_back_exactly_with_python_dotenv() -> None:
    doc, keys = edited_document(TRICKY_VALUES)
    read = dotenv_reads(doc.render())
    assert {key: read[key] for key in keys} == keys
    assert {key: EnvDocument.parse(doc.render()).get(key) for key in keys} == keys


@settings(max_examples=500, deadline=None)
@given(
    st.text(st.characters(blacklist_characters="\r\n\0"), max_size=16),
    st.sampled_from(STARTING_LINES),
)
def test_any_single_line_value_reads_back_exactly_or_is_refused(value: str, start: str) -> None:
    text = "BEFORE='x'\n" + (start.format(key="K") + "\n" if start else "") + 'AFTER="y"\n'
    doc = EnvDocument.parse(text)
    try:
        doc.set("K", value)
    except EnvFileError as exc:
        assert "$" in value or value.endswith("\\")  # only the documented combinations are refused
        assert "\\" in value
        assert "backslash" in str(exc)
        assert doc.render() == text
        return
    assert dotenv_reads(doc.render()) == {"BEFORE": "x", "K": value, "AFTER": "y"}


@pytest.mark.parametrize("value", UNREPRESENTABLE_VALUES)
def test_values_no_spelling_can_carry_are_refused(value: str) -> None:
    doc = EnvDocument.parse("A=1\n")
    with pytest.raises(EnvFileError, match="cannot be written so that Docker Compose and python-dotenv"):
        doc.set("K", value)
    assert doc.render() == "A=1\n"


@pytest.fixture(scope="module")
def compose() -> list[str]:
    """Compose v2 (no daemon needed for `config`); CI must have it. Its binary is called directly:
    the property test below asks it 120 times."""
    require(compose_available(), "`docker compose` v2 is not installed")
    return compose_binary()


def compose_reads(compose: list[str], directory: Path, env_text: str, keys: list[str]) -> dict[str, str]:
    """The values Docker Compose puts into a service's environment from `${KEY}` with this `.env`."""
    (directory / ".env").write_bytes(env_text.encode("utf-8"))
    service_env = "".join(f"      {key}: ${{{key}}}\n" for key in keys)
    (directory / "compose.yaml").write_text(
        f"services:\n  probe:\n    image: alpine\n    environment:\n{service_env}", encoding="utf-8"
    )
    clean_env = {k: v for k, v in os.environ.items() if k not in keys and not k.startswith("COMPOSE_")}
    result = subprocess.run(
        [*compose, "-p", "scaffoldrt", "-f", "compose.yaml", "config", "--format", "json"],
        cwd=directory,
        env=clean_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "variable is not set" not in result.stderr, result.stderr  # a `$` was interpolated
    environment = json.loads(result.stdout)["services"]["probe"]["environment"]
    return {key: environment[key].replace("$$", "$") for key in keys}  # `config` prints `$` as `$$`


def test_tricky_and_random_values_read_back_exactly_with_docker_compose(
    compose: list[str], tmp_path: Path
) -> None:
    values = TRICKY_VALUES + random_values(300, seed=20261127)
    doc, keys = edited_document(values)
    read = compose_reads(compose, tmp_path, doc.render(), list(keys))
    wrong = {key: (keys[key], read[key]) for key in keys if read[key] != keys[key]}
    assert wrong == {}
    assert {key: dotenv_reads(doc.render())[key] for key in keys} == keys


def test_a_value_with_a_line_break_or_nul_is_refused() -> None:
    doc = EnvDocument.parse("A=1\n")
    for value in ["two\nlines", "cr\rhere", "crlf\r\n", "nul\0"]:
        with pytest.raises(EnvFileError, match="value for A"):
            doc.set("A", value)
        with pytest.raises(EnvFileError, match="value for NEW"):
            doc.set("NEW", value)
    assert doc.render() == "A=1\n"


@pytest.mark.parametrize("key", ["", "1X", "MY-KEY", "my.key", "A B", "KÉY", "A=B", "\ufeffA"])
def test_an_invalid_key_name_is_refused(key: str) -> None:
    doc = EnvDocument.parse("A=1\n")
    with pytest.raises(EnvFileError, match=r"not a valid \.env variable name"):
        doc.set(key, "v")
    assert doc.render() == "A=1\n"


# -- malformed lines are kept, reported, and never rewritten ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "mentions"),
    [
        ("B=2\nexport A=1\n", 2, "export"),
        ("B=2\nA\n", 2, "no `=`"),
        ('B=2\nA="never closed\n', 2, "cannot parse"),
        ("B=2\nA='x' junk\n", 2, "cannot parse"),
        ("B=2\nA: yaml style\n", 2, "cannot parse"),
        ("B=2\n'A'=quoted name\n", 2, "quotes"),
        ("\ufeffA=1\nB=2\n", 1, "byte-order mark"),
        ("export A=1\nA=2\n", 1, "export"),  # even when a later, well-formed line wins
    ],
)
def test_set_refuses_a_key_on_a_malformed_line_naming_the_line_and_the_fix(
    text: str, line: int, mentions: str
) -> None:
    doc = EnvDocument.parse(text)
    with pytest.raises(EnvFileError) as caught:
        doc.set("A", "new")
    assert f"line {line}" in caught.value.message
    assert caught.value.hint and f"line {line}" in caught.value.hint
    assert doc.render() == text
    problem = problems_by_line(doc)[line]
    assert any(mentions in p.message for p in problem)


def test_an_edit_that_would_change_how_other_lines_read_is_refused() -> None:
    # The unclosed quote on line 1 would swallow an appended `B='x"y'`: python-dotenv reads A as
    # `abc\nB='x`. Appending must not silently lose the new key (or change A).
    text = 'A="abc\n'
    doc = EnvDocument.parse(text)
    with pytest.raises(EnvFileError, match="cannot set B safely: line 1 is malformed"):
        doc.set("B", 'x"y')
    assert doc.render() == text


def test_malformed_lines_are_kept_byte_for_byte_when_other_keys_change() -> None:
    text = "export A=1\nB\n'C'=3\nD=\"open\nE: 5\n\ufeffF=6\nG=old\n"
    doc = EnvDocument.parse(text)
    doc.set("G", "new")
    doc.set("H", "added")
    assert doc.render() == text.replace("G=old", "G=new") + "H=added\n"


def test_a_clean_file_has_no_problems() -> None:
    text = (
        "# authentik\nAUTHENTIK_SECRET_KEY='s3cr3t with space'\nPG_PASS=abc\n\n"
        'PROXY_SUBNET=10.9.0.0/28  # pinned\nEMPTY=\nQUOTED="x"\n'
    )
    assert EnvDocument.parse(text).problems() == []


def test_problems_name_the_line_the_key_and_a_fix() -> None:
    text = (
        "# header\n"  # 1
        "\n"  # 2
        "export A=1\n"  # 3
        "B\n"  # 4
        "C='never closed\n"  # 5
        "MY-KEY=1\n"  # 6
        "D= # looks like a comment\n"  # 7
        "A=2\n"  # 8
        "E=1\n"  # 9
        "A=3\n"  # 10
    )
    found = problems_by_line(EnvDocument.parse(text))
    assert sorted(found) == [3, 4, 5, 6, 7, 8, 10]
    assert [(p.key, "export" in p.message) for p in found[3]] == [("A", True)]
    assert found[4][0].key == "B" and "no `=`" in found[4][0].message
    assert found[5][0].key == "C" and "cannot parse" in found[5][0].message
    assert found[6][0].key == "MY-KEY" and "not a valid variable name" in found[6][0].message
    assert found[7][0].key == "D" and "starts with `#`" in found[7][0].message
    assert "already on line 3" in found[8][0].message and "line 10" in found[8][0].message
    assert "already on line 3, 8" in found[10][0].message and "line 10" in found[10][0].message
    for problems in found.values():
        for problem in problems:
            assert "fix:" in problem.message
            assert str(problem).startswith(f"line {problem.line}: ")


def test_every_later_duplicate_is_reported_and_names_the_winner() -> None:
    found = EnvDocument.parse("A=1\nA=2\nB=1\nA=3\n").problems()
    assert [(p.line, p.key) for p in found] == [(2, "A"), (4, "A")]
    assert all("the last one, line 4" in p.message for p in found)


def test_crlf_is_reported_once_at_its_first_line() -> None:
    found = EnvDocument.parse("A=1\nB=2\r\nC=3\r\n").problems()
    assert [(p.line, "CRLF" in p.message) for p in found] == [(2, True)]


def test_line_numbers_count_crlf_as_one_line_break_even_after_a_malformed_line() -> None:
    found = problems_by_line(EnvDocument.parse("A=1\r\nB='open\r\n\r\nexport C=1\r\n"))
    assert "cannot parse" in found[2][0].message
    assert "export" in found[4][-1].message


def test_problem_messages_never_contain_values() -> None:
    secret = "hunter2-secret"
    text = f"export A={secret}\nB='{secret}\nA={secret}\n\ufeffC={secret}\nD {secret}\n"
    for problem in EnvDocument.parse(text).problems():
        assert secret not in problem.message


# -- pins ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pinned"),
    [
        ("PROXY_SUBNET=10.9.0.0/28  # pinned\n", True),
        ("PROXY_SUBNET=10.9.0.0/28 # Pinned by me, do not touch\n", True),
        ("PROXY_SUBNET='10.9.0.0/28'# pinned\n", True),
        ('PROXY_SUBNET="10.9.0.0/28"\t# pinned\n', True),
        ("PROXY_SUBNET=10.9.0.0/28\n", False),
        ("PROXY_SUBNET=10.9.0.0/28 # unpinned\n", False),
        ("PROXY_SUBNET=10.9.0.0/28#pinned\n", False),  # no space: `#pinned` is part of the value
        ("PROXY_SUBNET= # pinned\n", False),  # the value is `# pinned`, not a comment
        ("# pinned\nPROXY_SUBNET=10.9.0.0/28\n", False),  # a comment line above does not pin
        ("PROXY_SUBNET=10.0.0.0/8 # pinned\nPROXY_SUBNET=10.9.0.0/28\n", False),  # the winning line decides
        ("OTHER=1 # pinned\n", False),
    ],
)
def test_is_pinned_reads_the_comment_of_the_line_that_wins(text: str, pinned: bool) -> None:
    assert EnvDocument.parse(text).is_pinned("PROXY_SUBNET") is pinned


def test_a_pin_survives_a_value_change() -> None:
    doc = EnvDocument.parse("PROXY_SUBNET=10.9.0.0/28  # pinned\n")
    doc.set("PROXY_SUBNET", "10.9.1.0/28")
    assert doc.is_pinned("PROXY_SUBNET")
    assert doc.render() == "PROXY_SUBNET=10.9.1.0/28  # pinned\n"


# -- loading ---------------------------------------------------------------------------------------------


def test_load_keeps_every_byte_crlf_and_bom_included(tmp_path: Path) -> None:
    raw = "\ufeff# c\r\nA='ü'\r\nB=2".encode()
    path = tmp_path / ".env"
    path.write_bytes(raw)
    doc = EnvDocument.load(path)
    assert doc.render().encode("utf-8") == raw
    doc.set("B", "3")
    assert doc.render().encode("utf-8") == raw[:-1] + b"3"


def test_load_of_a_missing_file_is_an_empty_document(tmp_path: Path) -> None:
    doc = EnvDocument.load(tmp_path / ".env")
    assert doc.render() == "" and doc.keys() == [] and doc.problems() == []


def test_load_refuses_a_directory_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / ".env").mkdir()
    with pytest.raises(EnvFileError, match="is a directory") as caught:
        EnvDocument.load(tmp_path / ".env")
    assert caught.value.hint


def test_load_refuses_a_file_that_is_not_utf8_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"A=1\nB=caf\xe9\n")
    with pytest.raises(EnvFileError, match=r"not valid UTF-8 \(line 2\)") as caught:
        EnvDocument.load(tmp_path / ".env")
    assert caught.value.hint and "UTF-8" in caught.value.hint


def test_load_refuses_a_file_it_may_not_read_with_a_hint(shared_dir: Path) -> None:
    path = shared_dir / ".env"
    path.write_text("SECRET=x\n")
    path.chmod(0o600 if os.geteuid() == 0 else 0o000)  # root's 0600 file is unreadable for nobody
    name, message = as_unprivileged_user(lambda: EnvDocument.load(path))
    assert name == "EnvFileError"
    assert "permission denied" in message and "fix:" in message


def test_module_imports_nothing_heavy() -> None:
    code = "import sys; b = set(sys.modules); import scaffold.envfile; print(*sorted(set(sys.modules) - b))"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    loaded = set(result.stdout.split())
    assert "scaffold.envfile" in loaded
    assert not loaded & {"docker", "copier", "ruamel", "requests", "yaml", "hypothesis", "scaffold.fsutil"}


# -- python-dotenv and Docker Compose: where they disagree, nothing may be written -----------------------

# The shapes a user's `.env` may really have that the two readers take differently (each also in the sweep).
DISAGREEING = {
    "backslash before a closing single quote": "BACKUP_DIR='C:\\'\nA=1\n# Docker's view\nB=2\n",
    "the same, with no later quote": "BACKUP_DIR='C:\\'\nA=1\nB=2\n",
    "yaml style": "A: 1\nB=2\n",
    "text after a closing quote": "A='x' junk\nB=2\n",
    "a statement right after a quote": "A='x'B=2\n",
    "quoted name": "'A'=1\n",
    "space in the name": "MY KEY=1\nB=2\n",
    "old mac line endings": "A=1\rB=2\r",
    "byte-order mark": "\ufeffA=1\n",
    "last line without a newline or `=`": "A=1\nTRAILING",
    "unclosed `${`": "A=${HOME\n",
}


def python_dotenv_agrees_with(text: str, compose_keys: set[str] | None) -> bool:
    """The definition: both readers parse every line and see the same keys (`compose_keys` None: refused)."""
    bindings = list(parse_stream(io.StringIO(text, newline="")))
    keys = {b.key for b in bindings if b.key is not None and b.value is not None}
    return compose_keys is not None and not any(b.error for b in bindings) and keys == compose_keys


@pytest.mark.parametrize("text", DISAGREEING.values(), ids=DISAGREEING.keys())
def test_shapes_the_readers_disagree_on_block_with_the_line_and_a_fix(text: str) -> None:
    doc = EnvDocument.parse(text)
    blocking = doc.blocking_problems()
    assert blocking, "scaffold would generate secrets Compose may already have"
    assert all("fix:" in problem.message for problem in blocking)
    assert all(1 <= problem.line <= len(re.split(r"\r\n|\n|\r", text)) for problem in blocking)
    assert doc.render() == text


def test_a_file_both_readers_agree_on_does_not_block() -> None:
    text = "export A=1\nB\nMY-KEY=2\nC='x' # c\nD=\"$${x}\"\nA=3\r\nE=\n"
    assert EnvDocument.parse(text).blocking_problems() == []


def test_values_compose_reads_differently_are_a_warning_without_the_value() -> None:
    doc = EnvDocument.parse('PG_PASS=abc$def\nB="it\\\'s"\n')
    found = problems_by_line(doc)
    assert "different values for PG_PASS" in found[1][0].message and not found[1][0].blocking
    assert "different values for B" in found[2][0].message
    assert all("abc" not in p.message and "def" not in p.message for p in doc.problems())


# Fragments for the sweep: every construct either reader treats specially, in any combination.
_SWEEP_KEYS = ["A", "B", "KEY", "export A", "'A'", "A ", "\tB", "1X", "MY-KEY", "a.b", "A B", "x[1]", "É", ""]
_SWEEP_SEPARATORS = ["=", " = ", "=\t", ":", ": ", " ", ""]
_SWEEP_CHARS = "ab1 \t#'\"\\$={}:-?é\u00a0\r\n"
_SWEEP_PREFIXES = ["", "", "", "\ufeff", " \n"]


@st.composite
def disagreement_texts(draw: st.DrawFn) -> str:
    lines = [draw(st.sampled_from(_SWEEP_PREFIXES))]
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 3)) == 0:
            lines.append("#" + draw(st.text(_SWEEP_CHARS, max_size=5)))
        else:
            raw = draw(st.text(_SWEEP_CHARS, max_size=8))
            value = draw(st.sampled_from([raw, f"'{raw}'", f'"{raw}"']))
            lines.append(
                draw(st.sampled_from(_SWEEP_KEYS)) + draw(st.sampled_from(_SWEEP_SEPARATORS)) + value
            )
            lines[-1] += draw(st.sampled_from(["", " # pinned", "#c"]))
        lines[-1] += draw(st.sampled_from(["\n", "\n", "\r\n", "\r", ""]))
    return "".join(lines)


def minimal_shell() -> dict[str, str]:
    """The environment Compose runs in for the sweep: only what the docker CLI needs to find its plugin."""
    return {"PATH": os.environ["PATH"], "HOME": os.path.expanduser("~")}


def compose_environment(compose: list[str], directory: Path, env_text: str) -> str | None:
    """`docker compose config --environment` for this `.env` in a minimal shell; None when Compose refuses."""
    (directory / ".env").write_bytes(env_text.encode("utf-8"))
    (directory / "compose.yaml").write_text("services:\n  probe:\n    image: alpine\n", encoding="utf-8")
    shell = minimal_shell()
    result = subprocess.run(
        [*compose, "-p", "probe", "config", "--environment"], cwd=directory, env=shell, capture_output=True
    )
    if result.returncode != 0:
        assert b"failed to read" in result.stderr, result.stderr  # refused the .env, not something else
        return None
    lines = result.stdout.decode("utf-8").splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("DOCKER_CLI_PLUGIN_"))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(disagreement_texts(), st.sampled_from(list(DISAGREEING.values()))))
def test_scaffold_knows_what_docker_compose_reads_and_blocks_exactly_where_the_readers_disagree(
    compose: list[str], tmp_path: Path, text: str
) -> None:
    """The port of Compose's parser reads what the real `docker compose` reads (keys, values, refusals), and
    `blocking_problems` is non-empty exactly when python-dotenv and Compose disagree on the keys."""
    actual = compose_environment(compose, tmp_path, text)
    shell = minimal_shell()
    reading = composeenv.read(text, shell)
    if actual is None:
        assert reading.error is not None, f"Compose refuses {text!r}; the port reads it"
    else:
        assert reading.error is None, f"the port refuses {text!r} ({reading.error}); Compose reads it"
        environment = {
            **reading.values(shell),
            **shell,
            "COMPOSE_PROJECT_NAME": "probe",
            "PWD": str(tmp_path),
        }
        assert "".join(sorted(f"{k}={v}\n" for k, v in environment.items())) == actual
    compose_keys = None if reading.error else set(composeenv.read(text).values())
    blocked = EnvDocument.parse(text).blocking_problems() != []
    assert blocked == (not python_dotenv_agrees_with(text, compose_keys)), text


def test_disagreement_messages_never_show_what_compose_reads_after_a_quote() -> None:
    # Compose reads `hunter2tail` as a variable name; it is the end of what the user meant as the value.
    doc = EnvDocument.parse("PG_PASS='hunter2 head' hunter2tail\nB=1\n")
    assert doc.blocking_problems()
    assert all("hunter2" not in problem.message for problem in doc.problems())
