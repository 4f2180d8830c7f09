"""Build the documentation site from the notebooks: `python docs/build.py` (needs `pip install -e '.[docs]'`).

1. nbdev's own processing (`nbdev-proc-nbs`, less its Quarto install) runs into `_proc/`: directives and hidden cells go, a `show_doc` block
   follows every exported symbol, backticked names become links to their API entry.
2. Each processed notebook is made ready for Sphinx in `_docs_src/`, under nbdev's page name (`00_conv` -> `conv`):
   the title cell becomes a heading, the `show_doc` blocks get nbdev's anchors, links to the doc host become
   relative, and the landing page gets the navigation: the reading path of `nbs/index.ipynb`, part by part.
3. Sphinx (myst-nb renders the stored outputs; nothing is executed; furo theme) writes the site to `_docs/`, and each
   page gets its Markdown twin `page.html.md`, where the modules' `Docs:` links point.
4. The built site is checked without a browser (`docs/site_checks.py`): every internal link and anchor resolves,
   every image file exists, no raw `$...$` is left, nothing is loaded from another host.
"""
from __future__ import annotations
import argparse, json, re, shutil, subprocess, sys, time
from pathlib import Path
import yaml

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))
from site_checks import check_site  # noqa: E402

def doc_url() -> str:
    "The site's address, `[project.urls] Documentation` in pyproject.toml, from which nbdev writes the `Docs:` links."
    from nbdev.config import get_config
    url = get_config(ROOT).doc_url
    if not url: raise SystemExit("docs: pyproject.toml has no [project.urls] Documentation: nbdev's links need the site's address")
    return url.rstrip('/') + '/'

def page_name(stem: str) -> str:
    "nbdev's page name for a notebook: lower case, numeric prefix dropped (`00_conv` -> `conv`)."
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', stem.lower())

_part = re.compile(r'^\*\*(Part [IVX]+)[,:]?\s*([^*]+)\*\*', re.M)
_row = re.compile(r'^\|\s*`([^`]+)`\s*\|', re.M)

def reading_path(index_nb: Path, stems: list[str]) -> list[tuple[str, list[str]]]:
    "Parts and their notebooks, read from the reading-path tables of `index_nb`; every notebook must be in one part."
    text = '\n'.join(''.join(c['source']) for c in json.loads(index_nb.read_text())['cells'] if c['cell_type'] == 'markdown')
    heads = list(_part.finditer(text))
    parts = []
    for h, nxt in zip(heads, heads[1:] + [None]):
        block = text[h.end(): nxt.start() if nxt else len(text)]
        block = block.split('\n\n', 2)[:2]  # the part's table follows its heading; prose after it is not the table
        names = [n for n in _row.findall('\n\n'.join(block)) if n in stems]
        parts.append((f'{h[1]}: {h[2].strip()}', names))
    listed = [n for _, ns in parts for n in ns]
    missing = sorted(set(stems) - set(listed) - {'index'})
    twice = sorted({n for n in listed if listed.count(n) > 1})
    if not parts or missing or twice:
        raise SystemExit(f"docs: the reading path in {index_nb.name} must list every notebook once, in a table under a "
                         f"'**Part I, ...**' line; missing: {missing or 'none'}, listed twice: {twice or 'none'}")
    return parts

def _md(src: str) -> dict: return dict(cell_type='markdown', id=f'docs-{abs(hash(src)) % 10**8:08d}', metadata={}, source=src)

_opt = re.compile(r'^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
_source_link = re.compile(r'\[source\]\(([^)]+)\)\{[^}]*\}')
_showdoc_head = re.compile(r'^(#{2,4}) (\S+)$', re.M)

_api_link = re.compile(r'\[`([^`]+)`\]\(([\w-]+)\.html#([^)\s]+)\)')

def _fix_markdown(text: str, base: str, pages: dict[str, str], anchors: dict[str, set]) -> str:
    "Relative links to our own pages; a link to a symbol that has no `show_doc` entry is dropped; notebook names link to their page."
    text = _api_link.sub(lambda m: m[0] if m[3] in anchors.get(m[2], ()) else f'`{m[1]}`', text.replace(base, ''))
    return re.sub(r'(?<![\[\w])`(\d\d_\w+|index)`(?!\])', lambda m: f'[`{m[1]}`]({pages[m[1]]}.html)' if m[1] in pages else m[0], text)

def _fix_showdoc(md: str) -> str:
    "nbdev's `show_doc` Markdown, as Quarto would show it: the source link floats right; the heading carries nbdev's anchor."
    md = re.sub(r'^\s*---\s*\n', '', md)  # a rule cannot stand inside an output: site.css draws it
    md = _source_link.sub(lambda m: f'<a class="sourcelink" href="{m[1]}">source</a>', md)
    return _showdoc_head.sub(lambda m: f'{m[1]} <a id="{m[2].lower()}"></a>{m[2]}', md)

def prepare(proc_nb: Path, dest: Path, base: str, pages: dict[str, str], anchors: dict[str, set], nav: str = '') -> dict:
    "Turn one notebook processed by nbdev into the notebook Sphinx renders; returns it."
    nb = json.loads(proc_nb.read_text())
    cells = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'raw' and src.startswith('---'):  # nbdev's front matter: title and description
            fm = yaml.safe_load(src.strip().strip('-')) or {}
            cells.append(_md(f"# {fm.get('title', proc_nb.stem)}\n\n" + (f"*{fm['description']}*\n" if fm.get('description') else '')))
            continue
        if c['cell_type'] == 'markdown':
            if src.startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
            c['source'] = _fix_markdown(src, base, pages, anchors)
        elif c['cell_type'] == 'code':
            lines = src.splitlines()
            opts = dict(m.groups() for l in lines if (m := _opt.match(l)))
            if opts.get('include') == 'false': continue
            tags = (['remove-input'] if opts.get('echo') == 'false' else []) + (['remove-output'] if opts.get('output') == 'false' else [])
            c['source'] = '\n'.join(l for l in lines if not _opt.match(l)).strip('\n')
            c['metadata'] = {'tags': tags} if tags else {}
            for o in c.get('outputs', []):
                md = o.get('data', {}).get('text/markdown')
                if md is None: continue
                if _showdoc_head.search(md := ''.join(md)): c['metadata'].setdefault('tags', []).append('api')
                o['data']['text/markdown'] = _fix_markdown(_fix_showdoc(md), base, pages, anchors)
            if not c['source'] and not c.get('outputs'): continue
        cells.append(c)
    if nav: cells.append(_md(nav))
    nb['cells'] = cells
    dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False))
    return nb

def api_anchors(proc_nb: Path) -> set[str]:
    "nbdev's anchors of the symbols a processed notebook documents with `show_doc`."
    heads = (m[2].lower() for c in json.loads(proc_nb.read_text())['cells'] for o in c.get('outputs', [])
             for m in _showdoc_head.finditer(''.join(o.get('data', {}).get('text/markdown', ''))))
    return set(heads)

def markdown_twin(nb: dict) -> str:
    "The page as Markdown (nbdev's `.html.md`): prose, visible code and its text output; figures are on the HTML page."
    out = []
    for c in nb['cells']:
        src = c['source'] if isinstance(c['source'], str) else ''.join(c['source'])
        if c['cell_type'] == 'markdown':
            if not src.lstrip().startswith('```{toctree}'): out.append(src)
            continue
        if c['cell_type'] != 'code': continue
        if 'remove-input' not in c.get('metadata', {}).get('tags', []) and src: out.append(f'```python\n{src}\n```')
        for o in c.get('outputs', []):
            d = o.get('data', {})
            if 'text/markdown' in d: out.append(''.join(d['text/markdown']))
            elif o.get('output_type') == 'stream' or 'text/plain' in d and not ({'image/png', 'text/html'} & set(d)):
                text = ''.join(o.get('text', '') or d.get('text/plain', ''))
                if text.strip(): out.append(f'```\n{text.rstrip()}\n```')
    return '\n\n'.join(out) + '\n'

def toctree(parts) -> str:
    "The navigation, one hidden toctree per part: furo shows each part's name above its pages."
    return '\n\n'.join(f"```{{toctree}}\n:caption: {title}\n:hidden:\n\n" + '\n'.join(pages) + "\n```" for title, pages in parts)

def build(site: Path = ROOT/'_docs', check: bool = True) -> dict:
    t0 = time.time()
    nbs = ROOT/'nbs'
    stems = sorted(p.stem for p in nbs.glob('*.ipynb'))
    parts = reading_path(nbs/'index.ipynb', stems)
    print(f"docs: nbdev's processing of {len(stems)} notebooks into _proc/ ...", flush=True)
    from nbdev.serve import proc_nbs  # what `nbdev-proc-nbs` runs, without its attempt to install Quarto
    proc_nbs(str(nbs), force=True)
    src, base = ROOT/'_docs_src', doc_url()
    shutil.rmtree(src, ignore_errors=True); src.mkdir()
    pages = {s: page_name(s) for s in stems}
    anchors = {pages[s]: api_anchors(ROOT/'_proc'/f'{s}.ipynb') for s in stems}
    nav = toctree([(t, [pages[s] for s in ss]) for t, ss in parts])
    twins = {pages[s]: markdown_twin(prepare(ROOT/'_proc'/f'{s}.ipynb', src/f'{pages[s]}.ipynb', base, pages, anchors,
                                             nav if s == 'index' else '')) for s in stems}
    print(f"docs: sphinx-build -> {site.relative_to(ROOT) if site.is_relative_to(ROOT) else site} ...", flush=True)
    out = src/'_build'  # myst-nb keeps its files beside the HTML folder, so Sphinx builds here and the HTML moves
    subprocess.run([sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '-W', '--keep-going', '-c', str(DOCS),
                    '-d', str(out/'doctrees'), str(src), str(out/'html')], check=True)
    shutil.rmtree(site, ignore_errors=True)
    shutil.move(out/'html', site)
    mj = site/'_static'/'mathjax'  # the pages load tex-chtml.js; MathJax's other combined builds are never loaded
    for f in [*mj.glob('*svg*'), *mj.glob('*mml-*'), *mj.glob('*-full*'), mj/'node-main.js', mj/'output'/'svg']:
        shutil.rmtree(f) if f.is_dir() else f.unlink(missing_ok=True)
    for name, md in twins.items(): (site/f'{name}.html.md').write_text(md)
    if (site/'_sources').is_dir() and not any((site/'_sources').iterdir()): (site/'_sources').rmdir()
    (site/'.nojekyll').touch()  # GitHub Pages: serve _static/ and _images/ as they are
    print(f"docs: built {len(twins)} pages in {time.time() - t0:.0f} s: {site}/index.html")
    report = check_site(site, base, lib=ROOT/'xresnet_fa') if check else {}
    if report: print('docs: checked ' + ', '.join(f'{v} {k}' for k, v in report.items()))
    return report

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', type=Path, default=ROOT/'_docs', help='where the site is written (default: _docs/)')
    ap.add_argument('--no-check', action='store_true', help='skip the link and asset check of the built site')
    a = ap.parse_args()
    build(a.out.resolve(), check=not a.no_check)
