"Render nbs/index.ipynb to README.md without Quarto: markdown as is, visible code cells and their text output."
import json, re, sys
from pathlib import Path

def render(nb_path: Path) -> str:
    out = []
    for cell in json.loads(nb_path.read_text())['cells']:
        src = ''.join(cell['source'])
        if cell['cell_type'] == 'markdown': out.append(src); continue
        if re.search(r'^#\|\s*(hide|export)\b', src, re.M): continue
        code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
        if code: out.append(f'```python\n{code}\n```')
        text = ''.join(''.join(o.get('text', '')) for o in cell.get('outputs', []) if o.get('output_type') == 'stream')
        if text.strip(): out.append(f'```\n{text.rstrip()}\n```')
    return '\n\n'.join(out) + '\n'

if __name__ == '__main__':
    root = Path(__file__).resolve().parent.parent
    (root/'README.md').write_text(render(root/'nbs'/'index.ipynb'))
