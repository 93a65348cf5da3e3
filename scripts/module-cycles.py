#!/usr/bin/env python3
"""Fails when two top-level modules of the mcpgate binary crate (src/) import each other,
directly or around a loop: the crate's layers must stay one-way, like the workspace's crates."""
import pathlib
import re
import sys

src = pathlib.Path(__file__).resolve().parent.parent / "src"
modules = sorted(
    p.stem if p.is_file() else p.name
    for p in src.iterdir()
    if (p.is_dir() or p.suffix == ".rs") and p.stem not in ("lib", "main")
)
graph = {}
for module in modules:
    files = list((src / module).rglob("*.rs")) if (src / module).is_dir() else [src / f"{module}.rs"]
    text = "\n".join(f.read_text() for f in files)
    used = set(re.findall(r"crate::(\w+)", text))
    # `use crate::{a, b::c}` groups
    for group in re.findall(r"use crate::\{([^}]*)\}", text):
        used.update(name.split("::")[0].strip() for name in group.split(","))
    graph[module] = sorted((used & set(modules)) - {module})

def cycle_from(start):
    stack = [(start, [start])]
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return path + [start]
            if nxt not in path:
                stack.append((nxt, path + [nxt]))
    return None

for module in modules:
    print(f"{module} -> {', '.join(graph[module]) or '-'}")
for module in modules:
    loop = cycle_from(module)
    if loop:
        print("import cycle between top-level modules: " + " -> ".join(loop), file=sys.stderr)
        sys.exit(1)
print("no import cycle between the binary crate's top-level modules")
