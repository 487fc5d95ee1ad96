"""Every chapter's first cell installs eva_cam from git at this version's tag, never by name from the package index
(where eva_cam has no release, so whoever registers the name would run code in every student's Colab)."""
import configparser, json, re
from pathlib import Path

root = Path(__file__).resolve().parent.parent
version = configparser.ConfigParser()
version.read(root/'settings.ini')
TAG = f"git+https://github.com/eva-cam/eva_cam@v{version['DEFAULT']['version']}"

def cells(p): return [''.join(c['source']) for c in json.loads(p.read_text())['cells'] if c['cell_type'] == 'code']

def test_each_chapter_installs_the_tagged_version_from_git():
    for p in sorted((root/'nbs').glob('*.ipynb')):
        installs = [s for s in cells(p) if re.search(r"'-m', 'pip', 'install'", s) and 'eva_cam' in s]
        assert len(installs) == 1, f"{p.name}: expected one cell installing eva_cam, got {len(installs)}"
        s = installs[0]
        assert TAG in s, f"{p.name}: the install cell does not install {TAG}"
        code = '\n'.join(l.split('#')[0] for l in s.splitlines()).replace("find_spec('eva_cam')", '')
        assert not re.search(r"""['"]eva_cam['"]""", code), f"{p.name}: installs eva_cam by name from the package index"
        urls = re.findall(r"git\+https://[^'\"\s]+", s)
        assert urls == [TAG], f"{p.name}: installs {urls}, expected only {TAG}"

def test_the_readme_installs_the_tagged_version():
    readme = (root/'README.md').read_text()
    assert f"pip install {TAG}" in readme
    assert not re.search(r"^pip install eva_cam\b", readme, re.M)
