"""The docs pages, as a reader sees them.

The real site is built by Quarto in the GitHub workflow. Here each notebook is processed as nbdev
processes it for the docs (hidden cells dropped, `show_doc` entries added and rendered), rendered to
HTML with nbconvert, served on 127.0.0.1 and opened in headless Chromium. Each page must load with its
title, its section headings and an API entry for every exported name, every image must decode, and no
Python traceback may appear. Screenshots are saved in the test's temp folder (printed) to look at."""
import ast, functools, http.server, shutil, subprocess, sys, threading
from pathlib import Path

import nbformat
import yaml
import pytest
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
NOTEBOOKS = sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb'))


def exported_names(nb_name: str) -> list[str]:
    "Public functions and classes the notebook exports (constants get no API entry)."
    nb = nbformat.read(ROOT/'nbs'/nb_name, as_version=4)
    first = nb.cells[0].source if nb.cells else ''
    if not first.startswith('#| default_exp'): return []
    mod = ROOT/'eva_cam'/(first.split()[-1].replace('.', '/') + '.py')
    tree = ast.parse(mod.read_text())
    defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    return [n for n in defs if not n.startswith('_')]


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "Process the notebooks like nbdev's docs build, render each to HTML and serve them on 127.0.0.1."
    out = tmp_path_factory.mktemp('site')
    proc = ROOT/'_proc'
    shutil.rmtree(proc, ignore_errors=True)
    subprocess.run([sys.executable, '-c', 'from nbdev.serve import proc_nbs; proc_nbs(force=True, n_workers=1)'],
                   cwd=ROOT, check=True, timeout=600)
    exporter = HTMLExporter(template_name='lab')
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={'remove_input'}), enabled=True)
    for name in NOTEBOOKS:
        nb = nbformat.read(proc/name, as_version=4)
        for i, c in enumerate(nb.cells):
            c.pop('has_sd', None)  # nbdev's own marker, not part of the notebook format
            if c.cell_type == 'code' and '#| echo: false' in c.source: c.metadata['tags'] = ['remove_input']
            if c.cell_type == 'raw' and c.source.startswith('---'):  # front matter: Quarto draws it as the page title
                fm = yaml.safe_load(c.source.strip().strip('-'))
                nb.cells[i] = nbformat.v4.new_markdown_cell(f"# {fm.get('title', '')}\n\n> {fm.get('description', '')}")
        html, _ = exporter.from_notebook_node(nb)
        (out/name.replace('.ipynb', '.html')).write_text(html)
    if (ROOT/'nbs'/'images').is_dir(): shutil.copytree(ROOT/'nbs'/'images', out/'images')  # as Quarto copies them
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{server.server_address[1]}', out
    server.shutdown()
    shutil.rmtree(proc, ignore_errors=True)


@pytest.fixture(scope='module')
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's package (apt-get install chromium).")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=['--headless', '--no-sandbox', '--disable-gpu',
                              '--disable-background-networking'])
        yield b
        b.close()


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_page(site, browser, name):
    url, out = site
    page = browser.new_page(viewport={'width': 1100, 'height': 900})
    page.goto(f"{url}/{name.replace('.ipynb', '.html')}", timeout=30_000)
    page.wait_for_load_state('load')
    shot = out/name.replace('.ipynb', '.png')
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    # a title, and for library chapters at least one section
    assert page.locator('h1').count() >= 1, f"{name}: no title"
    text = page.inner_text('body')
    assert 'Traceback (most recent call last)' not in text, f"{name}: a Python traceback is on the page"
    # every image decodes (badges on the internet cannot load on an offline machine: not counted)
    broken = page.evaluate("[...document.images].filter(i => !i.src.startsWith('https://colab.research.google.com/'))"
                           ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src.slice(0, 60))")
    assert not broken, f"{name}: broken images {broken}"
    # an API entry (show_doc heading) for every exported name
    headings = page.evaluate("[...document.querySelectorAll('h2,h3,h4')].map(h => h.textContent.trim())")
    missing = [n for n in exported_names(name) if not any(h.startswith(n) for h in headings)]
    assert not missing, f"{name}: no API entry for {missing}"
    page.close()
