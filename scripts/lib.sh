# Shared by scripts/run and scripts/test: find Python, make .venv, install the project into it.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
RUN_DIR="$ROOT/.run"

die() { echo "error: $*" >&2; exit 1; }

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  die "Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11 to pick one)"
}

# ensure_venv EXTRAS: create .venv once, then (re)install only when the dependency files change.
ensure_venv() {
  local extras="$1" stamp want
  if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV ..." >&2
    "$(find_python)" -m venv "$VENV" || die "could not create a virtual environment in $VENV"
  fi
  want="$extras $(cat "$ROOT/pyproject.toml" "$ROOT/constraints/cpu.txt" | sha256sum | cut -c1-16) ${EMBED_TORCH_SPEC:-}"
  stamp="$VENV/.embedserve-installed"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "Installing embedserve[$extras] into $VENV (first run takes a minute) ..." >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    # torch first and pinned: a bare `torch` would pull a multi-GB CUDA build on a CPU box.
    # GPU hosts: EMBED_TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128".
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q ${EMBED_TORCH_SPEC:--c "$ROOT/constraints/cpu.txt" torch} >&2
    "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints/cpu.txt" -e "$ROOT[$extras]" >&2
    echo "$want" > "$stamp"
  fi
}
