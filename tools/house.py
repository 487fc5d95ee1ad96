"""The house's measures (issue 22): module sizes, functions over 40 lines, imports between eva_cam's modules
(cycles included, function-level imports counted), and how many public functions and classes have a test
within three cells of their definition.

    python tools/house.py
"""
import ast, glob, json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports(tree: ast.AST) -> set[str]:
    "The eva_cam modules a module imports, anywhere in it (relative or absolute)."
    found = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module:
            mod = n.module if n.level == 0 else 'eva_cam.' + n.module
            if mod.startswith('eva_cam.'): found.add(mod.split('.')[1])
    return found


def cycles(graph: dict) -> list:
    "Every module that can reach itself through the imports."
    def reach(a, seen):
        for b in graph.get(a, ()):
            if b not in seen: seen.add(b); reach(b, seen)
        return seen
    return sorted(a for a in graph if a in reach(a, set()))


def rhythm() -> tuple[int, int, list]:
    "Public functions and classes of export cells, and those a code cell among the next three names."
    tot, hit, missing = 0, 0, []
    for p in sorted((ROOT/'nbs').glob('*.ipynb')):
        cells = json.loads(p.read_text())['cells']
        for i, c in enumerate(cells):
            s = ''.join(c['source'])
            if c['cell_type'] != 'code' or not s.startswith('#| export'): continue
            tree = ast.parse('\n'.join(l for l in s.splitlines() if not l.startswith('#|')))
            after = [''.join(x['source']) for x in cells[i + 1:i + 4] if x['cell_type'] == 'code']
            for n in (d.name for d in tree.body if isinstance(d, (ast.FunctionDef, ast.ClassDef)) and not d.name.startswith('_')):
                tot += 1
                if any(re.search(rf'\b{re.escape(n)}\b', a) for a in after): hit += 1
                else: missing.append(f'{p.stem}:{n}')
    return hit, tot, missing


def main():
    graph = {}
    for f in sorted((ROOT/'eva_cam').glob('*.py')):
        if f.name.startswith('_'): continue
        text = f.read_text(); tree = ast.parse(text)
        graph[f.stem] = imports(tree) - {f.stem}
        long = [f"{n.name} ({n.end_lineno - n.lineno + 1})" for n in ast.walk(tree)
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 40]
        print(f"{f.stem:13s} {len(text.splitlines()):4d} lines  imports {', '.join(sorted(graph[f.stem])) or '-'}"
              + (f"  functions over 40 lines: {', '.join(long)}" if long else ''))
    print('import cycles:', cycles(graph) or 'none')
    hit, tot, missing = rhythm()
    print(f"{hit} of {tot} public functions and classes tested within three cells ({hit / tot:.0%}); not: {', '.join(missing)}")


if __name__ == '__main__':
    main()
