"""Commands whose meaning is chosen by a subcommand: git, kubectl, docker, package managers.

git: the listed read-only subcommands read `git:` (the whole repository database) and,
when they look at the working tree, `dir:` of the workspace (status and diff report on
every file). push, fetch, pull, clone and ls-remote talk to a remote: irreversible.
Everything else that changes the repository is raw (the snapshot catches its effects).
"""

from __future__ import annotations

import re

from coagent_cli.core.keys import dir_key
from coagent_cli.shell.commands import GIT_ALL, K8S_ALL, Handler, versions_only
from coagent_cli.shell.footprint import Builder, Effect, Place, Unknown
from coagent_cli.shell.words import Word

_GIT_TREE_READS = frozenset("status diff ls-files blame annotate grep check-ignore".split())
_GIT_DB_READS = frozenset(
    "log show rev-parse rev-list shortlog describe cat-file ls-tree show-ref for-each-ref "
    "merge-base name-rev count-objects whatchanged diff-tree cherry var version help".split())
_GIT_REMOTE = frozenset("push fetch pull clone ls-remote send-email".split())
_GIT_BAD_OPTIONS = re.compile(r"^(--output|-O|--open-files-in-pager|--ext-diff|--exec|--upload-pack"
                              r"|--receive-pack|--textconv|--no-index)")
_BRANCH_WRITES = frozenset("-d -D -m -M -c -C -f -u --delete --move --copy --force --set-upstream-to "
                           "--unset-upstream --edit-description --track --no-track".split())
_BRANCH_VALUED = frozenset("--contains --no-contains --merged --no-merged --points-at --sort "
                           "--format".split())
_TAG_WRITES = frozenset("-d -a -s -f -m -F -u --delete --annotate --sign --force --message "
                        "--file".split())
_CONFIG_READS = frozenset("--get --get-all --get-regexp --list -l --get-urlmatch".split())


def _irreversible(name: str, what: str) -> Effect:
    return Effect(kind="irreversible", reason=f"{name} {what}", names=(name,))


def _git(name: str, args: list[Word], place: Place) -> Effect:
    if not all(w.static for w in args):
        raise Unknown("git with an expanded argument")
    texts = [w.text for w in args]
    place, texts = _git_globals(place, texts)
    if not texts:
        return Builder(place).effect("git")
    sub, rest = texts[0], texts[1:]
    if sub in _GIT_REMOTE or (sub == "remote" and rest[:1] == ["update"]) or (
            sub == "submodule" and rest[:1] == ["update"]):
        return _irreversible(f"git {sub}", "talks to a remote")
    if any(_GIT_BAD_OPTIONS.match(t) for t in rest):
        raise Unknown(f"git {sub} with an option that writes or runs a program")
    tree = _git_read_kind(sub, rest)
    if tree is None:
        raise Unknown(f"git {sub} may change the repository")
    return _git_effect(place, sub, tree)


def _git_globals(place: Place, texts: list[str]) -> tuple[Place, list[str]]:
    while texts and texts[0].startswith("-"):
        opt = texts.pop(0)
        if opt in ("--no-pager", "-P", "--paginate", "--no-optional-locks", "--literal-pathspecs"):
            continue
        if opt == "-C" and texts:
            place = place.with_cwds(place.absolute(texts.pop(0)))
            continue
        raise Unknown(f"git option {opt} changes what git does")
    return place, texts


def _git_read_kind(sub: str, rest: list[str]) -> bool | None:
    """None: not a read. Otherwise whether it also reads the working tree."""
    if sub in _GIT_TREE_READS:
        return not (sub == "diff" and ("--cached" in rest or "--staged" in rest))
    if sub in _GIT_DB_READS:
        return False
    if sub == "branch" and _branch_lists(rest):
        return False
    if sub == "tag" and (not rest or (("-l" in rest or "--list" in rest)
                                      and not _TAG_WRITES.intersection(rest))):
        return False
    if sub == "remote" and all(t in ("-v", "--verbose") for t in rest):
        return False
    if sub == "stash" and rest[:1] in (["list"], ["show"]):
        return False
    if sub == "config" and _CONFIG_READS.intersection(rest) and "--file" not in rest:
        return False
    if sub == "reflog" and (not rest or rest[0] == "show"):
        return False
    return None


def _branch_lists(rest: list[str]) -> bool:
    if _BRANCH_WRITES.intersection(t.split("=")[0] for t in rest):
        return False
    listing = "--list" in rest or "-l" in rest
    for i, t in enumerate(rest):
        if not t.startswith("-") and not listing and (i == 0 or rest[i - 1] not in _BRANCH_VALUED):
            return False
    return True


def _git_effect(place: Place, sub: str, tree: bool) -> Effect:
    if not place.cwds:
        raise Unknown("git in a directory we cannot follow")
    b = Builder(place)
    for cwd in place.cwds:
        if place.relative(cwd) is None and not place.workspace.startswith(cwd.rstrip("/") + "/"):
            b.outside.append(cwd)  # another repository: not part of the workspace
            continue
        b.read_key(GIT_ALL)
        if tree:
            b.read_key(dir_key(""))
    return b.effect(f"git {sub}")


def _first_word(args: list[Word], valued: frozenset[str] = frozenset()) -> str | None:
    skip = False
    for word in args:
        if skip:
            skip = False
            continue
        if word.text in valued:
            skip = True
        elif not word.text.startswith("-"):
            return word.text if word.static else None
    return None


_KUBECTL_VALUED = frozenset("-n --namespace --context --kubeconfig --cluster --user -s --server "
                            "-l --selector -o --output".split())
_KUBECTL_READS = frozenset("get describe logs explain api-resources api-versions version "
                           "cluster-info top".split())


def _kubectl(name: str, args: list[Word], place: Place) -> Effect:
    sub = _first_word(args, _KUBECTL_VALUED)
    if sub in _KUBECTL_READS:
        b = Builder(place)
        b.read_key(K8S_ALL)
        return b.effect(f"{name} {sub}")
    if sub == "config" and _first_word(args[1:]) in ("view", "current-context", "get-contexts"):
        return Builder(place).effect(f"{name} config")
    return _irreversible(f"{name} {sub or ''}".strip(), "changes a cluster")


def _publisher(verbs: frozenset[str]) -> Handler:
    """A package manager: publishing is irreversible; `--version` reads nothing; else raw."""
    def handler(name: str, args: list[Word], place: Place) -> Effect:
        sub = _first_word(args)
        if sub in verbs:
            return _irreversible(f"{name} {sub}", "publishes to a registry")
        return versions_only(name, args, place)
    return handler


def _remote_copy(name: str, args: list[Word], place: Place) -> Effect:
    for word in args:
        if word.text.startswith("-"):
            continue
        if _is_remote_path(word.text):
            return _irreversible(name, "copies to or from another host")
    raise Unknown(f"{name} between local paths")


def _is_remote_path(text: str) -> bool:
    head = text.split("/", 1)[0]
    return ":" in head and not text.startswith((".", "/", "~"))


def _docker(name: str, args: list[Word], place: Place) -> Effect:
    sub = _first_word(args, frozenset("-H --host --context --config -c".split()))
    if sub in ("push", "login", "logout"):
        return _irreversible(f"{name} {sub}", "talks to a registry")
    return versions_only(name, args, place)


SUBCOMMANDS: dict[str, Handler] = {
    "git": _git,
    "kubectl": _kubectl,
    "docker": _docker, "podman": _docker,
    "npm": _publisher(frozenset("publish unpublish deprecate dist-tag owner".split())),
    "yarn": _publisher(frozenset({"publish"})), "pnpm": _publisher(frozenset({"publish"})),
    "cargo": _publisher(frozenset({"publish", "yank", "owner"})),
    "gem": _publisher(frozenset({"push", "yank"})),
    "poetry": _publisher(frozenset({"publish"})),
    "pip": _publisher(frozenset({"upload"})), "pip3": _publisher(frozenset({"upload"})),
    "scp": _remote_copy, "rsync": _remote_copy,
}

