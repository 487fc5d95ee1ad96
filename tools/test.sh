#!/usr/bin/env bash
# Every test of eva_cam, as CI runs it: the nbdev-ci checks, each notebook under nbdev_test,
# the tests under tests/, and each notebook again as a student's Run all runs it. Ends with one line "N passed, N failed".
# Cells flagged `fulldata` run only when the full CIFAR-10 mirror is beside the project
# (../shared/data); cells flagged `slow` (full training) never run here.
set -u
cd "$(dirname "$0")/.."
# the notebooks' and tests' temporary folders (run folders with checkpoints among them) go into one folder that
# is removed at the end, so that repeated test runs do not fill the disk
export TMPDIR=$(mktemp -d -t eva_cam_tests.XXXXXX)
trap 'rm -rf "$TMPDIR"' EXIT
passed=0; failed=0; failures=()
pass() { passed=$((passed+1)); echo "PASS $1"; }
fail() { failed=$((failed+1)); failures+=("$1"); echo "FAIL $1"; }

flags=""
if [ -d ../shared/data ] || [ -n "${EVA_CAM_DATA:-}" ]; then flags="fulldata"; fi
echo "nbdev_test flags: ${flags:-none}"

# 1-2. the nbdev-ci checks: notebooks clean, library in sync with the notebooks
if git rev-parse --git-dir >/dev/null 2>&1; then
  before=$(git status --porcelain)
  nbdev_clean >/dev/null && [ "$(git status --porcelain)" = "$before" ] && pass "nbdev_clean leaves no change" \
    || { fail "nbdev_clean leaves no change"; git status --porcelain; }
  before=$(git status --porcelain)
  nbdev_export >/dev/null && [ "$(git status --porcelain)" = "$before" ] && pass "nbdev_export leaves no change" \
    || { fail "nbdev_export leaves no change"; git status --porcelain; git diff --stat; }

  python tools/readme.py --check && pass "README.md is up to date with nbs/index.ipynb" || fail "README.md is up to date with nbs/index.ipynb"
fi

# 3. every notebook, one at a time so each counts
for nb in nbs/*.ipynb; do
  start=$(date +%s)
  if nbdev_test --path "$nb" --do_print ${flags:+--flags "$flags"} > /tmp/eva_cam_nbtest.log 2>&1; then
    pass "$nb ($(( $(date +%s) - start )) s)"
  else
    cat /tmp/eva_cam_nbtest.log; fail "$nb"
  fi
done

# 4. tests that need more than a notebook cell (browser, wheel)
if [ -d tests ] && ls tests/test_*.py >/dev/null 2>&1; then
  for t in tests/test_*.py; do
    start=$(date +%s)
    if python -m pytest -q -x "$t" > /tmp/eva_cam_pytest.log 2>&1; then pass "$t ($(( $(date +%s) - start )) s)"
    else cat /tmp/eva_cam_pytest.log; fail "$t"; fi
  done
fi

# 5. every notebook the way a student's Run all runs it (tools/run_all.py): a fresh environment with only
# `pip install .` (no dev extras), each notebook copied outside the repository, IN_TEST unset, pip offline;
# with EVA_CAM_DATA set, the full-data cells run too
student="$TMPDIR/student"
if { python3 -m venv "$student" && "$student/bin/python" -m pip install -q --upgrade pip \
     && "$student/bin/python" -m pip install -q . ipykernel nbclient; } > "$TMPDIR/student-install.log" 2>&1; then
  # the installed package (pip builds a wheel and installs it) explains a picture with the weights it ships, offline,
  # from outside the repository: no training, no run folder
  if (cd "$TMPDIR" && PIP_NO_INDEX=1 "$student/bin/python" -c "from eva_cam.data import load_cifar10; from PIL import Image; Image.fromarray(load_cifar10('sample').x_test[1]).save('picture.png')" \
      && "$student/bin/eva_cam" cam --image picture.png --out picture-cam.png > cam.log 2>&1 && grep -q 'the trained ResNet18 eva_cam ships' cam.log && [ -s picture-cam.png ]); then
    pass "eva_cam cam with the shipped weights, installed with pip"
  else cat "$TMPDIR/cam.log" 2>/dev/null; fail "eva_cam cam with the shipped weights, installed with pip"; fi
  for nb in nbs/*.ipynb; do
    if "$student/bin/python" tools/run_all.py "$nb" > "$TMPDIR/run_all.log" 2>&1; then pass "Run all: $(grep -m1 '^PASS' "$TMPDIR/run_all.log" | cut -c6-)"
    else grep -v 'Kernel is running over TCP' "$TMPDIR/run_all.log"; fail "Run all: $nb"; fi
  done
  # again with the full data set where there is one, through EVA_CAM_DATA as a student would set it: chapter 00,
  # whose full-data cells load it (the other full-data cell, 03's range test, already ran under nbdev_test above;
  # running it twice would cost CI 2-4 minutes)
  full="${EVA_CAM_DATA:-}"; [ -z "$full" ] && [ -f ../shared/data/cifar10-jpeg.tar.gz ] && full=$(cd ../shared/data && pwd)/cifar10-jpeg.tar.gz
  if [ -n "$full" ]; then
    for nb in nbs/00_data.ipynb; do
      if EVA_CAM_DATA="$full" "$student/bin/python" tools/run_all.py "$nb" > "$TMPDIR/run_all.log" 2>&1; then pass "Run all with EVA_CAM_DATA: $(grep -m1 '^PASS' "$TMPDIR/run_all.log" | cut -c6-)"
      else grep -v 'Kernel is running over TCP' "$TMPDIR/run_all.log"; fail "Run all with EVA_CAM_DATA: $nb"; fi
    done
  fi
  # the explorer in a browser again, with Colab's ipywidgets 7.7.1 (and Voila 0.4, the Voila for ipywidgets 7)
  if "$student/bin/python" -m pip install -q "ipywidgets==7.7.1" "voila<0.5" playwright pytest > "$TMPDIR/w7-install.log" 2>&1 \
     && "$student/bin/python" -m pytest -q -x tests/test_explorer_browser.py > "$TMPDIR/w7.log" 2>&1; then
    pass "tests/test_explorer_browser.py with ipywidgets 7.7.1"
  else cat "$TMPDIR/w7-install.log" "$TMPDIR/w7.log" 2>/dev/null | tail -40; fail "tests/test_explorer_browser.py with ipywidgets 7.7.1"; fi
else
  tail -20 "$TMPDIR/student-install.log"; fail "Run all: pip install . in a fresh environment"
fi

[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
