"""The Grad-CAM explorer in a real browser: Voila serves a notebook that shows it, headless Chromium changes the
layer, the method and the image, and the displayed overlay and the score panel (faithfulness on this image) must change
with no error on the page or in the server log.

Needs: pip install voila playwright pytest; apt-get install -y chromium (Debian's /usr/bin/chromium is used as
Playwright's browser, so `playwright install` is never run and nothing is downloaded).
"""
import json, os, signal, socket, subprocess, sys, time, urllib.error, urllib.request
from pathlib import Path

import pytest

CHROMIUM = os.environ.get('EVA_CAM_CHROMIUM', '/usr/bin/chromium')
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking']
START_TIMEOUT_S = 120   # server start + kernel start + first model run
STEP_TIMEOUT_MS = 60_000

NOTEBOOK_CELLS = [
    "import torch\n"
    "from eva_cam.data import load_cifar10, get_transforms\n"
    "from eva_cam.resnet import load_pretrained\n"
    "from eva_cam.explorer import GradCamExplorer",
    "model = load_pretrained()\n"
    "sample = load_cifar10('sample', cache_dir=None)\n"
    "_, tfm = get_transforms('none')\n"
    "idx = list(range(0, 200, 25))\n"
    "xb = torch.stack([tfm(image=sample.x_test[i])['image'] for i in idx])\n"
    "ex = GradCamExplorer(model, xb, sample.y_test[idx])\n"
    "ex.widget",
]


def _requirements():
    "Fail (never skip) with a clear message when a piece the test needs is missing."
    missing = []
    if not Path(CHROMIUM).exists(): missing.append(f"Chromium at {CHROMIUM} (Debian: apt-get install -y chromium)")
    for mod, pkg in (('voila', 'voila'), ('playwright', 'playwright')):
        try: __import__(mod)
        except ImportError: missing.append(f"the Python package {pkg} (pip install {pkg})")
    if missing: pytest.fail("The explorer browser test needs " + '; '.join(missing) + '.', pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def _write_notebook(path: Path):
    nb = {'cells': [{'cell_type': 'code', 'execution_count': None, 'metadata': {}, 'outputs': [], 'source': c} for c in NOTEBOOK_CELLS],
          'metadata': {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}},
          'nbformat': 4, 'nbformat_minor': 5}
    path.write_text(json.dumps(nb))


@pytest.fixture
def voila_url(tmp_path):
    "Serve the explorer notebook with Voila on 127.0.0.1; the server and its kernel are stopped however the test ends."
    _requirements()
    nb = tmp_path/'explorer.ipynb'; _write_notebook(nb)
    port, log = _free_port(), open(tmp_path/'voila.log', 'w')
    env = dict(os.environ, MPLBACKEND='Agg', EVA_CAM_CACHE=str(tmp_path/'cache'))
    proc = subprocess.Popen([sys.executable, '-m', 'voila', str(nb), '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1',
                             '--Voila.root_dir=' + str(tmp_path),
                             # jupytext's lab extension (installed with jupytext) fails to load in Voila; it is not ours to test
                             '--VoilaConfiguration.extension_denylist=jupyterlab-jupytext'],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=env, start_new_session=True)
    url = f'http://127.0.0.1:{port}/'
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Voila exited with code {proc.returncode}:\n{(tmp_path/'voila.log').read_text()[-3000:]}", pytrace=False)
            try:
                with urllib.request.urlopen(url + 'api', timeout=2): break
            except urllib.error.HTTPError: break  # any HTTP answer means the server is up
            except OSError:
                if time.monotonic() > deadline: pytest.fail(f"Voila did not answer on {url} within {START_TIMEOUT_S} s.", pytrace=False)
                time.sleep(0.5)
        yield url, tmp_path/'voila.log'
    finally:
        try: os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError: pass
        try: proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL); proc.wait(timeout=15)
        log.close()


def _change(page, select: str, shot: Path, **option) -> float:
    "Pick an option of the dropdown `select`; wait for the overlay to change; return the seconds it took."
    old = page.get_attribute('img.eva-overlay', 'src')
    t0 = time.perf_counter()
    page.select_option(select, **option)
    page.wait_for_function("old => { const im = document.querySelector('img.eva-overlay');"
                           " return im && im.src !== old && im.complete && im.naturalWidth > 0; }",
                           arg=old, polling=5, timeout=STEP_TIMEOUT_MS)
    dt = time.perf_counter() - t0
    page.screenshot(path=str(shot))
    return dt


def test_explorer_in_browser(voila_url):
    from playwright.sync_api import sync_playwright
    url, server_log = voila_url
    out = server_log.parent
    console_errors, failed_requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=STEP_TIMEOUT_MS)
        try:
            page = browser.new_page(viewport={'width': 1100, 'height': 700})
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.on('console', lambda m: console_errors.append(m.text) if m.type == 'error' else None)
            page.on('pageerror', lambda e: console_errors.append(str(e)))
            page.on('requestfailed', lambda r: failed_requests.append(r.url))
            page.goto(url, timeout=START_TIMEOUT_S * 1000)
            page.wait_for_selector('img.eva-overlay', state='visible', timeout=START_TIMEOUT_S * 1000)
            page.wait_for_function("() => document.querySelector('img.eva-overlay').naturalWidth > 0")
            page.screenshot(path=str(out/'0_start.png'))
            overlay = page.locator('img.eva-overlay')
            pixels = [overlay.screenshot()]

            panels = [page.inner_text('.eva-scores')]
            layer_s = [_change(page, '.eva-layer select', out/'1_layer2.png', label='layer2 (16x16)')]
            pixels.append(overlay.screenshot()); panels.append(page.inner_text('.eva-scores'))
            layer_s.append(_change(page, '.eva-layer select', out/'2_layer1.png', label='layer1.1 (32x32)'))
            pixels.append(overlay.screenshot()); page.wait_for_function("() => document.querySelector('.eva-scores').innerText.includes('layer1.1:')")
            panels.append(page.inner_text('.eva-scores'))
            method_s = _change(page, '.eva-method select', out/'2b_hirescam.png', label='hirescam')
            pixels.append(overlay.screenshot()); panels.append(page.inner_text('.eva-scores'))
            bold = page.inner_text('.eva-ranking tr[style*="bold"]')
            image_s = [_change(page, '.eva-image select', out/f'3_image{i}.png', index=i) for i in (1, 2, 3)]
            pixels.append(overlay.screenshot())
            layer_s.append(_change(page, '.eva-layer select', out/'4_layer3.png', label='layer3 (8x8)'))
            image_s.append(_change(page, '.eva-image select', out/'5_image1_again.png', index=1))  # cached: no model work
            pixels.append(overlay.screenshot())
            text = page.inner_text('body')
        finally:
            browser.close()
    print(f"\nscreenshots in {out}")
    print("layer change -> new picture: " + ', '.join(f"{t*1000:.0f} ms" for t in layer_s))
    print("image change -> new picture: " + ', '.join(f"{t*1000:.0f} ms" for t in image_s) + " (the last one cached)")
    print(f"method change -> new picture: {method_s*1000:.0f} ms")
    print("score panel after the last change:\n" + panels[-1])
    assert len(set(pixels)) == len(pixels), "the overlay did not change on the screen after every change"
    assert all('faithfulness on this image' in p for p in panels), panels
    assert len(set(panels)) == len(panels), "the score panel did not change with the layer and the method"
    assert panels[0].splitlines()[1].startswith('layer3:') and panels[2].splitlines()[1].startswith('layer1.1:'), panels
    assert 'layer1.1' in bold, bold  # the chosen layer is the bold row of the ranking
    assert 'layer3' in text and 'true class' in text, text[:500]
    assert 'Traceback' not in text and 'Error' not in text, text[:2000]
    log = server_log.read_text()
    assert 'Traceback' not in log, log[-3000:]
    (out/'console_errors.txt').write_text('\n---\n'.join(console_errors))
    # offline, Voila's optional downloads from CDNs (MathJax) fail; a failed request to our own server is an error
    local_failures = [u for u in failed_requests if u.startswith(url)]
    assert not local_failures, local_failures
    print("requests to other hosts that failed (offline machine):", [u for u in failed_requests if not u.startswith(url)])
    real_errors = [e for e in console_errors if not e.startswith('Failed to load resource')]
    import ipywidgets
    if ipywidgets.__version__.startswith('7.'):
        # ipywidgets 7 (Colab's) typesets each description with MathJax 2's MathJax.Hub.Queue; Voila 0.4, the Voila for
        # ipywidgets 7, loads MathJax 3, which has no Hub. The text is set before the call fails, so nothing is lost
        real_errors = [e for e in real_errors if "reading 'Queue'" not in e]
    assert not real_errors, '\n---\n'.join(real_errors)
