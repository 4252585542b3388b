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

# ensure_venv EXTRAS: create .venv once; install again only when the dependency files change or
# an extra is asked for that is not installed yet (so run and test do not undo each other).
ensure_venv() {
  local extras="$1" stamp digest have_digest have_extras
  if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV ..." >&2
    "$(find_python)" -m venv "$VENV" || die "could not create a virtual environment in $VENV"
  fi
  digest="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints/cpu.txt" | sha256sum | cut -c1-16)${EMBED_TORCH_SPEC:+-custom}"
  stamp="$VENV/.embedserve-installed"
  # Braces: a redirection is opened before the ones after it apply, so `read < missing 2>/dev/null`
  # would still print the missing stamp's error on a first run.
  { read -r have_digest have_extras < "$stamp"; } 2>/dev/null || true
  if [ "${have_digest:-}" = "$digest" ]; then
    local missing=0 extra
    for extra in ${extras//,/ }; do
      case ",${have_extras:-}," in *",$extra,"*) ;; *) missing=1 ;; esac
    done
    [ "$missing" = 0 ] && return 0
    extras="$have_extras,$extras"
  fi
  extras="$(echo "$extras" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)"
  echo "Installing embedserve[$extras] into $VENV (the first run takes a minute) ..." >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  # torch first and pinned: a bare `torch` would pull a multi-GB CUDA build on a CPU box.
  # GPU hosts: EMBED_TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128".
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q ${EMBED_TORCH_SPEC:--c "$ROOT/constraints/cpu.txt" torch} >&2
  "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints/cpu.txt" -e "$ROOT[$extras]" >&2
  echo "$digest $extras" > "$stamp"
}
