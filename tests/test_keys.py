import pytest
from hypothesis import given, strategies as st

from coagent_cli.core.keys import ALL, Key, conflicts, covers, dir_key, file_key
from coagent_cli.errors import CoagentError, InvalidKey


@pytest.mark.parametrize(
    ("text", "norm"),
    [
        ("file:./a/../b", "file:b"),
        ("file:src//x.py", "file:src/x.py"),
        ("dir:src/", "dir:src"),
        ("dir:.", "dir:"),
        ("dir:", "dir:"),
        ("git:HEAD", "git:HEAD"),
        ("k8s:default/deploy/web", "k8s:default/deploy/web"),
        ("*", "*"),
        (" file:a ", "file:a"),
    ],
)
def test_spellings_normalise_to_one_key(text: str, norm: str) -> None:
    assert str(Key.parse(text)) == norm


@pytest.mark.parametrize("bad", ["file:../x", "file:/etc/passwd", "file:", "file:.", "nocolon", ":x",
                                 "dir:a/../../b", "file:a\0b"])
def test_bad_keys_are_refused_with_our_error(bad: str) -> None:
    with pytest.raises(InvalidKey) as info:
        Key.parse(bad)
    assert isinstance(info.value, CoagentError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("dir:src", "file:src/a.py", True),
        ("dir:src", "file:srcx/a.py", False),
        ("dir:src", "dir:src/sub", True),
        ("dir:src/sub", "dir:src", False),
        ("dir:", "file:anything", True),
        ("file:a", "file:a", True),
        ("file:a", "file:b", False),
        ("dir:a", "file:a", True),
        ("*", "git:HEAD", True),
        ("git:", "git:ref/heads/main", True),
        ("git:HEAD", "git:index", False),
        ("k8s:default/", "k8s:default/deploy/web", True),
        ("k8s:default", "k8s:default/deploy/web", False),
        ("file:a", "git:a", False),
        ("dir:", "git:HEAD", False),
        ("git:HEAD", "*", False),
    ],
)
def test_covers(a: str, b: str, expected: bool) -> None:
    assert covers(Key.parse(a), Key.parse(b)) is expected


def test_conflicts_is_symmetric_covering() -> None:
    assert conflicts(Key.parse("file:src/a"), Key.parse("dir:src"))
    assert conflicts(Key.parse("dir:src"), Key.parse("file:src/a"))
    assert not conflicts(Key.parse("dir:src"), Key.parse("dir:lib"))


segment = st.sampled_from(["a", "b", "src", ".", "..", "x.py"])
paths = st.lists(segment, min_size=1, max_size=5).map("/".join)


@given(paths, paths)
def test_covers_agrees_with_path_prefixes(p: str, q: str) -> None:
    try:
        d, f = dir_key(p), file_key(q)
    except InvalidKey:
        return
    expected = d.name == "" or f.name == d.name or f.name.startswith(d.name + "/")
    assert covers(d, f) is expected
    assert covers(ALL, f) and not covers(f, ALL)
