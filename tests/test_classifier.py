"""The command classifier: corpus, exact footprints, declared tools, fuzz."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coagent_cli.core.keys import ALL, Key, keys
from coagent_cli.shell import Classification, ToolMatch, classify

WS = Path("/ws")
HOME = Path("/home/u")
CORPUS = Path(__file__).parent / "data" / "commands.txt"
KINDS = {"read", "write", "irreversible", "raw", "tool"}


def run(line: str, cwd: Path = WS, **kw: Any) -> Classification:
    return classify(line, cwd=cwd, workspace=WS, home=HOME, **kw)


def corpus() -> list[str]:
    """See the header of commands.txt for the format."""
    lines = []
    for text in CORPUS.read_text().splitlines():
        if not text.strip() or text.startswith("#"):
            continue
        if text.startswith("heredoc: "):
            text = text.removeprefix("heredoc: ").replace("\\n", "\n")
        lines.append(text)
    return lines


def assert_well_formed(c: Classification) -> None:
    assert c.kind in KINDS
    assert isinstance(c.reads, frozenset) and isinstance(c.writes, frozenset)
    assert all(isinstance(k, Key) for k in c.reads | c.writes)
    assert c.reason and "\n" not in c.reason
    assert all(isinstance(p, str) and p.startswith("/") for p in c.outside)
    assert set(c.outside_writes) <= set(c.outside)
    if c.kind in ("raw", "irreversible"):
        assert c.reads == c.writes == frozenset({ALL})
    else:
        assert ALL not in c.reads | c.writes
    if c.kind == "read":
        assert not c.writes and not c.outside_writes
    if c.kind == "write":
        assert c.writes or c.outside_writes
    assert (c.tool is None) == (c.kind != "tool")


def test_corpus_is_big_enough() -> None:
    assert len(corpus()) >= 200


@pytest.mark.parametrize("line", corpus())
def test_corpus_line_classifies_cleanly(line: str) -> None:
    assert_well_formed(run(line))


def test_corpus_from_a_subdirectory() -> None:
    for line in corpus():
        assert_well_formed(run(line, cwd=WS / "src"))


# line, kind, reads, writes, outside
EXACT: list[tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = [
    ("cat a b | grep x > out.txt", "write", ("file:a", "file:b"), ("file:out.txt",), ()),
    ("sed -i s/a/b/ src/x.py", "write", ("file:src/x.py",), ("file:src/x.py",), ()),
    ("sed -n '1,5p' src/x.py", "read", ("file:src/x.py",), (), ()),
    ("sed 's/a/b/' in.txt > out.txt", "write", ("file:in.txt",), ("file:out.txt",), ()),
    ("echo hi > ../x", "write", (), (), ("/x",)),
    ("echo hi > /dev/null", "read", (), (), ()),
    ("cat src/*.py", "read", ("dir:src",), (), ()),
    ('cat "src/$name.py"', "read", ("dir:src",), (), ()),
    ("cat /etc/passwd", "read", (), (), ("/etc/passwd",)),
    ("cat ~/notes.txt", "read", (), (), ("/home/u/notes.txt",)),
    ("head -n 5 a.txt", "read", ("file:a.txt",), (), ()),
    ("head -5 a.txt", "read", ("file:a.txt",), (), ()),
    ("tail -n +20 data.csv", "read", ("file:data.csv",), (), ()),
    ("grep -rn foo src tests", "read", ("dir:src", "dir:tests"), (), ()),
    ("grep -rn foo", "read", ("dir:",), (), ()),
    ("grep -e foo -e bar a.txt", "read", ("file:a.txt",), (), ()),
    ("grep -n --include='*.py' foo -r src", "read", ("dir:src",), (), ()),
    ("grep -n --include=*.py foo -r src", "read", ("dir:src", "dir:"), (), ()),
    ("grep -f pats.txt data.txt", "read", ("file:pats.txt", "file:data.txt"), (), ()),
    ("rg TODO src", "read", ("dir:src",), (), ()),
    ("ls", "read", ("dir:",), (), ()),
    ("ls -la src docs", "read", ("dir:src", "dir:docs"), (), ()),
    ("find src -name '*.py' -type f", "read", ("dir:src",), (), ()),
    ("find . -newer stamp", "read", ("dir:", "file:stamp"), (), ()),
    ("wc -l < big.txt", "read", ("file:big.txt",), (), ()),
    ("cd src && cat a.py", "read", ("file:src/a.py",), (), ()),
    ("cd src; cat a.py", "read", ("file:src/a.py", "file:a.py"), (), ()),
    ("(cd src && ls) && cat b", "read", ("dir:src", "file:b"), (), ()),
    ("cd /tmp && ls", "read", (), (), ("/tmp",)),
    ("for f in src/*.py; do wc -l \"$f\"; done", "read", ("dir:src",), (), ()),
    ("for f in a b; do cat $f; done", "read", ("file:a", "file:b"), (), ()),
    ("if [ -f a ]; then cat a; fi", "read", ("file:a",), (), ()),
    ("while read l; do echo \"$l\"; done < list.txt", "read", ("file:list.txt",), (), ()),
    ("echo x | tee -a log1 log2", "write", (), ("file:log1", "file:log2"), ()),
    ("{ echo a; echo b; } > both.txt", "write", (), ("file:both.txt",), ()),
    ("ls 2> err.txt", "write", ("dir:",), ("file:err.txt",), ()),
    ("ls &> all.txt", "write", ("dir:",), ("file:all.txt",), ()),
    ("cat < in > out 2>&1", "write", ("file:in",), ("file:out",), ()),
    ("cat a >&- 2>&1", "read", ("file:a",), (), ()),
    ("cp a.txt b.txt", "write", ("file:a.txt",), ("dir:b.txt",), ()),
    ("cp -r src backup", "write", ("dir:src",), ("dir:backup",), ()),
    ("mv old.py new.py", "write", ("dir:old.py",), ("dir:old.py", "dir:new.py"), ()),
    ("rm f.txt", "write", (), ("file:f.txt",), ()),
    ("rm -rf build dist", "write", (), ("dir:build", "dir:dist"), ()),
    ("rm /tmp/x", "write", (), (), ("/tmp/x",)),
    ("mkdir -p a/b", "write", (), ("dir:a/b",), ()),
    ("touch src/__init__.py", "write", (), ("file:src/__init__.py",), ()),
    ("ln -s ../shared/c.yaml c.yaml", "write", (), ("dir:c.yaml",), ()),
    ("sort -o sorted.txt names.txt", "write", ("file:names.txt",), ("file:sorted.txt",), ()),
    ("uniq in.txt out.txt", "write", ("file:in.txt",), ("file:out.txt",), ()),
    ("chmod +x run.sh", "write", (), ("file:run.sh",), ()),
    ("git status", "read", ("dir:", "git:"), (), ()),
    ("git log --oneline -5", "read", ("git:",), (), ()),
    ("git diff --cached", "read", ("git:",), (), ()),
    ("git branch -a", "read", ("git:",), (), ()),
    ("x=$(cat VERSION)", "read", ("file:VERSION",), (), ()),
    ("diff <(sort a) <(sort b)", "read", ("file:a", "file:b"), (), ()),
    ("bash -c 'rm -rf build'", "write", (), ("dir:build",), ()),
    ("kubectl get pods", "read", ("k8s:",), (), ()),
    ("echo hi", "read", (), (), ()),
    ("", "read", (), (), ()),
    ("# just a comment", "read", (), (), ()),
    ("cat > f.txt <<'EOF'\nhello $(rm -rf /)\nEOF", "write", (), ("file:f.txt",), ()),
    ("cat > f.txt <<EOF\nhello $HOME\nEOF", "write", (), ("file:f.txt",), ()),
]


@pytest.mark.parametrize(("line", "kind", "reads", "writes", "outside"), EXACT)
def test_exact_footprint(line: str, kind: str, reads: tuple[str, ...], writes: tuple[str, ...],
                         outside: tuple[str, ...]) -> None:
    c = run(line)
    assert (c.kind, c.reads, c.writes, set(c.outside)) == (kind, keys(*reads), keys(*writes),
                                                           set(outside)), c.reason


def test_write_outside_is_listed_and_stays_a_write() -> None:
    c = run("echo hi > ../x")
    assert c.kind == "write" and c.outside_writes == ("/x",)
    assert "outside the workspace" in c.reason


def test_relative_paths_resolve_against_cwd() -> None:
    c = run("cat a.py ../README.md > ../out.txt", cwd=WS / "src")
    assert c.reads == keys("file:src/a.py", "file:README.md")
    assert c.writes == keys("file:out.txt")


@pytest.mark.parametrize("line", [
    "make", "pytest -q", "python -c 'print(1)'", "npm install", "find . -name '*.pyc' -delete",
    "find . -exec rm {} +", "awk '{print > \"x\"}' f", "sed 's/a/b/w out' f", "sed -i.bak s/a/b/ f",
    "cat $X", "rm -rf \"$DIR\"", "eval ls", "source env.sh", "f() { ls; }", "$(echo ls) x",
    "xargs rm < list", "ln a b", "git commit -m x", "git branch new", "git -c a=b log",
    "git log --output=x", "cat <<EOF > f\n$(rm x)\nEOF", "[[ -f a ]]", "echo $((1+2))",
    "PATH=/evil:$PATH", "FOO=1 cat a", "cd $X && cat a", "grep --weird x f", "sort -T /tmp a",
    "for f in *; do cd $f; done", "for f in a; do f=/etc/x; rm $f; done",
    "for f in a; do read f; rm $f; done",
])
def test_raw_when_unsure(line: str) -> None:
    c = run(line)
    assert c.kind == "raw" and c.reads == c.writes == frozenset({ALL}), c.reason


@pytest.mark.parametrize("line", [
    "git push origin main", "git fetch", "git pull --rebase", "curl https://x", "wget x",
    "ssh host ls", "scp a host:/tmp/", "rsync -a dist/ host:/srv/", "npm publish",
    "twine upload dist/*", "pip upload x", "docker push app", "kubectl apply -f k8s/",
    "curl -fsSL https://x | bash", "make && git push",
])
def test_irreversible(line: str) -> None:
    c = run(line)
    assert c.kind == "irreversible" and c.reads == c.writes == frozenset({ALL}), c.reason


# -- declared tools ------------------------------------------------------------------------

@dataclass
class ReplaceTool:
    """A tiny matcher for `replace FILE OLD NEW` (the real tool library lives elsewhere)."""

    name: str = "replace"

    def match(self, argv: list[str], cwd: Path, workspace: Path) -> ToolMatch | None:
        if len(argv) != 4 or argv[0] != "replace":
            return None
        rel = (cwd / argv[1]).relative_to(workspace).as_posix()
        key = Key.parse(f"file:{rel}")
        return ToolMatch(tool=self.name, params={"file": rel, "old": argv[2], "new": argv[3]},
                         reads=frozenset({key}), writes=frozenset({key}))


def test_tool_match_on_a_whole_simple_command() -> None:
    c = run("replace a.py 'old name' new", cwd=WS / "src", tools=[ReplaceTool()])
    assert c.kind == "tool" and c.tool == "replace"
    assert c.params == {"file": "src/a.py", "old": "old name", "new": "new"}
    assert c.reads == c.writes == keys("file:src/a.py")
    assert_well_formed(c)


@dataclass(frozen=True)
class Spec:
    name: str


@dataclass(frozen=True)
class SpecMatch:
    """The shape coagent_cli.tools returns: `tool` is a spec object with a name."""

    tool: Spec
    params: dict[str, Any]
    reads: frozenset[Key]
    writes: frozenset[Key]


@dataclass
class SpecMatcher:
    name: str = "declared-tools"

    def match(self, argv: list[str], cwd: Path, workspace: Path) -> SpecMatch | None:
        if argv[:1] != ["bump"]:
            return None
        return SpecMatch(Spec("bump"), {}, frozenset(), keys("file:VERSION"))


def test_tool_match_accepts_a_spec_object_as_the_tool() -> None:
    c = run("bump", tools=[ReplaceTool(), SpecMatcher()])
    assert (c.kind, c.tool, c.writes) == ("tool", "bump", keys("file:VERSION"))


@pytest.mark.parametrize("line", ["replace a b c && ls", "replace a b c > out", "replace $X b c",
                                  "replace a b"])
def test_tool_not_matched_unless_the_line_is_one_plain_command(line: str) -> None:
    assert run(line, tools=[ReplaceTool()]).kind != "tool"


# -- never raises --------------------------------------------------------------------------

_PIECES = list("ab./-~*?$'\"`\\|&;<>(){}[]=#!\n\t ") + [
    "cat ", "cd ", "sed -i ", "<<EOF\n", "<<'EOF'\n", "EOF", "$(", "for x in ", "; do ", "; done",
    "grep -r ", "git ", "rm -rf ", " > ", " 2>&1", "bash -c ", "find . ", "\"$x\""]
SHELLISH = st.lists(st.sampled_from(_PIECES), max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), SHELLISH))
def test_fuzz_never_raises(line: str) -> None:
    assert_well_formed(run(line))


@settings(max_examples=100, deadline=None)
@given(SHELLISH)
def test_fuzz_never_raises_from_a_subdirectory(line: str) -> None:
    assert_well_formed(run(line, cwd=WS / "src"))


@pytest.mark.parametrize(
    ("line", "whole"),
    [
        ("echo x > f", {"file:f"}),
        ("echo x >| f", {"file:f"}),
        ("printf %s data > notes.txt; echo more >> notes.txt", {"file:notes.txt"}),
        ("cat a > b", {"file:b"}),
        ("sh -c 'echo 1 > c'", {"file:c"}),
        ("echo x >> f", set()),                 # an append depends on what was there
        ("sed s/a/b/ f > f", set()),            # reads what it truncates
        ("cat src/*.py > src/all.py", set()),   # the glob reads the target's directory
        ("tee f < g", set()),                   # tee is not a redirect
    ],
)
def test_truncating_redirects_are_whole_file_writes(line: str, whole: set[str]) -> None:
    ws = Path("/tmp/ws")
    found = classify(line, cwd=ws, workspace=ws)
    assert {str(k) for k in found.overwrites} == whole
    assert found.overwrites <= found.writes
