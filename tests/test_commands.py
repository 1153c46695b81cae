"""parse_commands is forgiving about form, strict about meaning, and never raises."""

from hypothesis import given, settings
from hypothesis import strategies as st

from freemem.core.commands import COMMANDS_JSON_SCHEMA, Command, parse_commands


def test_bare_array():
    r = parse_commands('[{"prefix": "a b", "suffix": "c"}]')
    assert r.ok and r.commands == [Command(prefix="a b", suffix="c")]


def test_fenced_with_prose_and_trailing_comma():
    text = 'Here are the deletions:\n```json\n[\n {"prefix": "x", "suffix": "y"},\n]\n```\nDone.'
    assert parse_commands(text).commands == [Command(prefix="x", suffix="y")]


def test_wrapped_object_and_single_object():
    assert parse_commands('{"commands": [{"prefix": "p", "suffix": "s"}]}').commands == [Command(prefix="p", suffix="s")]
    assert parse_commands('sure {"prefix": "p", "suffix": "s"}').commands == [Command(prefix="p", suffix="s")]


def test_think_block_is_ignored():
    text = '<think>maybe [{"prefix": "no", "suffix": "no"}]</think>[{"prefix": "yes", "suffix": "ok"}]'
    assert parse_commands(text).commands == [Command(prefix="yes", suffix="ok")]


def test_empty_list_is_ok_and_garbage_gives_reason():
    assert parse_commands("[]").ok and parse_commands("[]").commands == []
    bad = parse_commands("I cannot help with that.")
    assert not bad.ok and "no JSON" in bad.error and bad.commands == []
    assert parse_commands(None).error == "empty output"


def test_items_that_are_not_commands_are_skipped():
    r = parse_commands('[{"prefix": "a", "suffix": "b"}, {"foo": 1}, 3]')
    assert r.commands == [Command(prefix="a", suffix="b")] and r.skipped == 2


def test_missing_suffix_defaults_to_empty():
    assert parse_commands('[{"prefix": "a"}]').commands == [Command(prefix="a", suffix="")]


def test_schema_shape():
    assert COMMANDS_JSON_SCHEMA["required"] == ["commands"]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises(text):
    r = parse_commands(text)
    assert isinstance(r.commands, list)
    assert r.ok or r.error
