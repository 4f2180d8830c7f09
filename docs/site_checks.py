"""Checks of a built site that need no browser: internal links and anchors, image files, raw math, other hosts, `Docs:` links.

`check_site(site, base, lib)` raises `SiteError` listing every problem, or returns what it counted.
"""
from __future__ import annotations
import ast, re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

class SiteError(Exception): pass

_skip_text = {'code', 'pre', 'script', 'style', 'kbd', 'samp', 'textarea'}
_raw_math = re.compile(r'\$\$.+?\$\$|(?<![\w$\\])\$(?=[^\s$])[^$\n]*?(?<=[^\s$\\])\$(?!\d)')

class _Page(HTMLParser):
    "Ids, links, loaded resources and the prose (text outside code and rendered math) of one HTML page."
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.links, self.loads, self.imgs, self.text, self.code, self._stack = set(), [], [], [], [], [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ('id', 'name'):
            if a.get(k) and (k == 'id' or tag == 'a'): self.ids.add(a[k])
        if tag == 'a' and a.get('href'): self.links.append(a['href'])
        if tag == 'img': self.imgs.append(a.get('src', ''))
        if tag in ('script', 'img', 'iframe', 'source') and a.get('src'): self.loads.append(a['src'])
        if tag == 'link' and a.get('href') and {'stylesheet', 'preload', 'icon', 'prefetch'} & set((a.get('rel') or '').split()):
            self.loads.append(a['href'])
        if tag not in ('br', 'img', 'meta', 'link', 'input', 'hr', 'wbr', 'source'):
            math = 'math' in (a.get('class') or '').split()
            self._stack.append((tag, math))
    def handle_endtag(self, tag):
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag: del self._stack[i:]; break
    def handle_data(self, data):
        if not any(t in _skip_text or m for t, m in self._stack): self.text.append(data)
        elif any(t == 'pre' for t, _ in self._stack): self.code.append(data)

def _parse(p: Path) -> _Page:
    pg = _Page(); pg.feed(p.read_text(errors='replace')); return pg

def _external(url: str) -> bool: return bool(urlsplit(url).scheme in ('http', 'https') or url.startswith('//'))

def docs_links(lib: Path) -> list[tuple[str, str]]:
    "(module, url) for each module of `lib` whose docstring ends with nbdev's `Docs:` line."
    out = []
    for f in sorted(lib.glob('*.py')):
        doc = ast.get_docstring(ast.parse(f.read_text())) or ''
        if (m := re.search(r'^Docs:\s*(\S+)\s*$', doc, re.M)): out.append((f.stem, m[1]))
    return out

def check_site(site: Path, base: str, lib: Path | None = None) -> dict:
    site = Path(site)
    pages = sorted(p for p in site.rglob('*.html') if '_static' not in p.parts)
    if not (site/'index.html').exists(): raise SiteError(f'{site}/index.html is missing')
    parsed = {p: _parse(p) for p in pages}
    problems, n_links, n_anchors, n_imgs = [], 0, 0, 0
    for css in site.rglob('*.css'):
        if re.search(r'url\(\s*["\']?(https?:)?//|@import\s+["\']?(https?:)?//', css.read_text(errors='replace')):
            problems.append(f'{css.relative_to(site)}: fetches a font or style from another host')
    for p, pg in parsed.items():
        rel = p.relative_to(site)
        for url in pg.loads:
            if _external(url): problems.append(f'{rel}: loads {url} from another host')
        for src in pg.imgs:
            if src.startswith('data:'): n_imgs += 1; continue
            if _external(src): continue  # reported above
            n_imgs += 1
            if not (p.parent/unquote(urlsplit(src).path)).is_file(): problems.append(f'{rel}: image {src} is missing')
        for href in pg.links:
            u = urlsplit(href)
            if u.scheme or href.startswith('//'): continue
            n_links += 1
            target = p if not u.path else (p.parent/unquote(u.path)).resolve()
            if target.is_dir(): target = target/'index.html'
            if not target.exists(): problems.append(f'{rel}: link {href} leads nowhere'); continue
            if u.fragment and target.suffix == '.html':
                n_anchors += 1
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if unquote(u.fragment) not in ids: problems.append(f'{rel}: link {href}: no #{u.fragment} on {target.name}')
        code = ''.join(pg.code)
        for m in re.finditer(r'^\s*#\|.*$|^.*\bshow_doc\(.*$', code, re.M):
            problems.append(f'{rel}: nbdev directive or show_doc call left in the code: {m[0].strip()[:60]!r}')
        for m in _raw_math.finditer(' '.join(pg.text)):
            problems.append(f'{rel}: raw math left in the text: {m[0][:60]!r}')
    n_docs = 0
    for mod, url in docs_links(lib) if lib else []:
        n_docs += 1
        if not url.startswith(base): problems.append(f'{mod}.py: Docs: {url} is not on the site {base}'); continue
        path = url[len(base):]
        for f in {path, path.removesuffix('.md')}:
            if not (site/f).is_file(): problems.append(f'{mod}.py: Docs: {url}: {f} is not in the site')
    if problems: raise SiteError(f'{len(problems)} problem(s) in the site {site}:\n' + '\n'.join(problems))
    return {'pages': len(pages), 'internal links': n_links, 'anchors': n_anchors, 'images': n_imgs, 'Docs: links': n_docs}
