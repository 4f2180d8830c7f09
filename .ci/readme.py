"""Render nbs/index.ipynb to README.md without Quarto: markdown as is, visible code cells and their text output,
and each figure a cell draws, written from its stored output to README_files/ and shown where the cell is."""
import base64, json, re, shutil
from pathlib import Path

def render(nb_path: Path, figures: Path) -> str:
    out, n = [], 0
    shutil.rmtree(figures, ignore_errors=True)
    for cell in json.loads(nb_path.read_text())['cells']:
        src = ''.join(cell['source'])
        if cell['cell_type'] == 'markdown': out.append(src); continue
        if re.search(r'^#\|\s*(hide|export)\b', src, re.M): continue
        code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
        if code and not re.search(r'^#\|\s*echo:\s*false', src, re.M): out.append(f'```python\n{code}\n```')
        text = ''.join(''.join(o.get('text', '')) for o in cell.get('outputs', []) if o.get('output_type') == 'stream')
        if text.strip(): out.append(f'```\n{text.rstrip()}\n```')
        for o in cell.get('outputs', []):
            if 'image/png' in o.get('data', {}):
                n += 1; figures.mkdir(exist_ok=True)
                (figures/f'figure_{n}.png').write_bytes(base64.b64decode(o['data']['image/png']))
                out.append(f'![figure {n}]({figures.name}/figure_{n}.png)')
    return '\n\n'.join(out) + '\n'

if __name__ == '__main__':
    root = Path(__file__).resolve().parent.parent
    (root/'README.md').write_text(render(root/'nbs'/'index.ipynb', root/'README_files'))
