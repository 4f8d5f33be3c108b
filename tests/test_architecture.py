"""The shape of the house, checked on the code (imports read with ast, lazy ones included):

- deploy/ (the model on the device) imports neither camera/ nor training/;
- camera/ (frames in and out) imports deploy/ but never training/;
- training/ (TensorFlow) imports deploy/ but never camera/;
- only the CLI (camera/front/cli.py and its command modules camera/front/cli_*.py) may reach every folder;
- no two modules import each other, directly or round a circle;
- no module is over 450 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("camera", "deploy", "training")
ALLOWED = {"deploy": set(), "camera": {"deploy"}, "training": {"deploy"}}
CLI = "camera.front.cli"


def is_cli(mod: str) -> bool:
    return mod == CLI or mod.startswith(CLI + "_")

MAX_LINES = 450


def modules() -> dict[str, Path]:
    found = {}
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    name = name.removeprefix("edgevision.")
    # the installed package 'edgevision' is camera/front: edgevision.cli -> camera.front.cli
    for prefix in FOLDERS:
        if name == prefix or name.startswith(prefix + "."):
            break
    else:
        name = f"camera.front.{name}" if name else "camera.front"
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "edgevision"]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                elif (node.module or "").split(".")[0] == "edgevision":
                    stem = node.module
                else:
                    continue
                targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                resolved = _resolve(target, mods)
                if resolved and resolved != mod:
                    graph[mod].add(resolved)
    return graph


def test_imports_between_folders_run_one_way():
    wrong = []
    for mod, targets in import_graph().items():
        if is_cli(mod):
            continue
        for target in targets:
            a, b = mod.split(".")[0], target.split(".")[0]
            if a != b and b not in ALLOWED[a] and not is_cli(target):
                wrong.append(f"{mod} -> {target}")
    assert not wrong, "imports against the one-way rule: " + ", ".join(sorted(wrong))


def test_no_modules_import_each_other_in_a_circle():
    graph = import_graph()
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_is_over_450_lines():
    big = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_the_checker_sees_a_forbidden_import(tmp_path, monkeypatch):
    """The rule test must be able to fail: a deploy module importing camera is caught."""
    fake = ROOT / "deploy" / "_architecture_probe.py"
    fake.write_text("from ..camera import sources\n")
    try:
        graph = import_graph()
        assert "camera.sources" in graph["deploy._architecture_probe"]
    finally:
        fake.unlink()
