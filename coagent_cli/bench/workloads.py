"""Workloads shared by benchmarks and the tests that check the same scenario."""

from __future__ import annotations

import shlex

Step = tuple[str, dict[str, str]]  # a declared tool call: name, params


def disjoint_tool_steps(part: str, n: int) -> list[Step]:
    """One agent's work under its own directory `part`, as declared tool calls."""
    out: list[Step] = []
    for i in range(n):
        if i % 3 == 0:
            out.append(("write_file", {"path": f"{part}/f{i}.txt", "content": f"{part} step {i}\n"}))
        elif i % 3 == 1:
            out.append(("append_to_file", {"path": f"{part}/log.txt", "text": f"{part} {i}\n"}))
        else:
            out.append(("replace_in_file", {"path": f"{part}/f{i - 2}.txt", "old": "step", "new": "STEP"}))
    return out


def as_raw(tool: str, p: dict[str, str]) -> str:
    """The same step as a raw `python3 -c` line (footprint `*`)."""
    path = repr(p["path"])
    code = {
        "write_file": f"open({path}, 'w').write({p.get('content')!r})",
        "append_to_file": f"open({path}, 'a').write({p.get('text')!r})",
        "replace_in_file": (f"t = open({path}).read(); assert t.count({p.get('old')!r}) == 1; "
                            f"open({path}, 'w').write(t.replace({p.get('old')!r}, {p.get('new')!r}))"),
    }[tool]
    return "python3 -c " + shlex.quote(code)
