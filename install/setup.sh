#!/usr/bin/env bash
# Create (or update) .venv/ at the repository root with the SMITE core and its test dependencies.
# Idempotent: running it again only installs what is missing.
#
#   ./install/setup.sh            CPU torch 2.13.0 (workstations, CI)
#   ./install/setup.sh --cuda     CUDA torch for farm GPU nodes (PyPI's default Linux build is CUDA)
#   ./install/setup.sh --extras diffusion,farm   optional feature sets from pyproject.toml
#   ./install/setup.sh --blender [4.2,4.5,5.0]   also one venv per Blender release, .venv-blender-<X.Y>/ (bpy + pytest),
#                                 for the real-Blender add-on test; default: 4.2 LTS, 4.5 LTS and 5.0. Own venvs
#                                 because bpy pins numpy (Debian may need the X/GL libs in .ci/run)
#
# Nothing here needs internet beyond the package registry; no model weights are downloaded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="torch==2.13.0"
EXTRAS="test,diffusion,farm"  # CI and workstations get the diffusion backend and the farm job writers; --extras replaces it
BLENDER=0
BLENDER_VERSIONS="4.2,4.5,5.0"
bpy_spec() {  # the bpy release tested for each supported Blender line (LTS lines get their latest patch)
  case "$1" in
    4.2) echo "bpy==4.2.23" ;;
    4.5) echo "bpy==4.5.15" ;;
    5.0) echo "bpy==5.0.1" ;;
    *) echo "setup.sh: unsupported Blender version $1 (choose from 4.2, 4.5, 5.0)" >&2; return 1 ;;
  esac
}

while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) TORCH_SPEC="${SMITE_CUDA_TORCH:-torch>=2.4}"; shift ;;
    --extras) EXTRAS="test,$2"; shift 2 ;;
    --blender)
      BLENDER=1; shift
      if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then BLENDER_VERSIONS="$1"; shift; fi ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "SMITE core needs Python >= 3.10")'

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup.sh: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# torch first and pinned: left to the resolver, a bare 'torch' requirement pulls a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "setup.sh: installing $TORCH_SPEC"
  "${PIP[@]}" install "$TORCH_SPEC"
fi
echo "setup.sh: installing smite[$EXTRAS] (editable)"
"${PIP[@]}" install -e "$ROOT[$EXTRAS]"
# TEST-ONLY: autosegmentor 3.0.1 carries a copy of the `cotracker` package (CoTracker3 code, CC BY-NC 4.0,
# non-commercial) so tests/test_track_cotracker.py runs the real architecture with random weights. Never a runtime
# dependency of SMITE; --no-deps keeps its requirements out (the `cotracker` code needs only torch).
if ! "$VENV/bin/python" -c "import cotracker.predictor" >/dev/null 2>&1; then
  "${PIP[@]}" install --no-deps "autosegmentor==3.0.1"
fi
if [ "$BLENDER" = 1 ]; then
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "bpy 4.2-5.0 needs Python 3.11 (set PYTHON=python3.11)")'
  for version in ${BLENDER_VERSIONS//,/ }; do
    spec="$(bpy_spec "$version")"
    BVENV="$ROOT/.venv-blender-$version"
    [ -x "$BVENV/bin/python" ] || { echo "setup.sh: creating $BVENV"; "$PYTHON" -m venv "$BVENV"; }
    if ! "$BVENV/bin/python" -c "import bpy" >/dev/null 2>&1; then
      echo "setup.sh: installing $spec into $BVENV"
      "$BVENV/bin/python" -m pip --disable-pip-version-check -q install "$spec" pytest
    fi
  done
fi
echo "setup.sh: done; run $VENV/bin/smite doctor to see what is usable"
