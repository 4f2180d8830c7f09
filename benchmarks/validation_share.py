"""How much of Part I's exported code (conv, resblock, xresnet) is argument validation; the tutorial asks for at most 10%.

A line of code is a non-blank line that is not a comment, an import, a docstring or __all__. It is validation when it lies in
a function whose only job is checking (check_*, _check_*, got/_got, MAX_INT), or calls a check_ function, or raises.
Usage: python benchmarks/validation_share.py [GIT_REF ...]   (WORK, the default, is the working tree)"""
import ast, re, subprocess, sys
VAL = re.compile(r'\bcheck_\w+\(|\braise\b|_check_\w+\(')
def is_checker(name): return re.match(r'_?check_|_?got$|MAX_INT$', name) is not None
def share(src):
    tree, lines = ast.parse(src), src.splitlines()
    skip, val = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)): skip.update(range(node.lineno, node.end_lineno + 1))
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)) and ast.get_docstring(node) and node.body:
            d = node.body[0]; skip.update(range(d.lineno, d.end_lineno + 1))
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', '') == '__all__' for t in node.targets): skip.update(range(node.lineno, node.end_lineno + 1))
        name = getattr(node, 'name', None) or (node.targets[0].id if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) else None)
        if name and is_checker(name) and isinstance(node, (ast.FunctionDef, ast.Assign)): val.update(range(node.lineno, node.end_lineno + 1))
    code = [i for i, l in enumerate(lines, 1) if l.strip() and not l.strip().startswith('#') and i not in skip]
    v = [i for i in code if i in val or (VAL.search(lines[i-1]) and not lines[i-1].strip().startswith(('def ', 'class ')))]
    return len(v), len(code)
for ref in sys.argv[1:] or ['WORK']:
    tv = tn = 0
    for mod in ('conv', 'resblock', 'xresnet'):
        src = open(f'xresnet_fa/{mod}.py').read() if ref == 'WORK' else subprocess.run(['git', 'show', f'{ref}:xresnet_fa/{mod}.py'], capture_output=True, text=True, check=True).stdout
        v, n = share(src); tv += v; tn += n
        print(f'{ref:8} {mod:10} {v:3} of {n:3} lines = {v/n:.0%}')
    print(f'{ref:8} {"00-02":10} {tv:3} of {tn:3} lines = {tv/tn:.0%}')
