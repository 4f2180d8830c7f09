"Sphinx configuration of the documentation site. Build it with `python docs/build.py`, never with sphinx-build alone."
from pathlib import Path
from nbdev.config import get_config

_cfg = get_config(Path(__file__).resolve().parent.parent)  # pyproject.toml's [project] and [tool.nbdev]
project = _cfg.lib_name
author = copyright = _cfg.author
html_title = project
extensions = ['myst_nb', 'sphinx-mathjax-offline']  # MathJax 3 and its fonts are copied into the site: no CDN

root_doc = 'index'
exclude_patterns = ['_build', '**.ipynb_checkpoints']
nb_execution_mode = 'off'         # the stored outputs are rendered; nothing runs
nb_merge_streams = True
myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence']
myst_dmath_double_inline = True
myst_all_links_external = True    # links are rewritten to page.html#anchor by build.py; Sphinx leaves them as they are
myst_heading_anchors = 4

html_theme = 'furo'               # system fonts only: no web font is fetched
html_static_path = ['_static']
html_css_files = ['site.css']
html_favicon = '_static/favicon.svg'
html_copy_source = False
html_show_sourcelink = False
pygments_style = 'default'
