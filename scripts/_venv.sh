# Sourced by demo.sh and test.sh: creates .venv with Python 3.11+ and installs mlwarden into it.
# Usage: install_mlwarden "<extras>"   e.g. install_mlwarden "" or install_mlwarden "test,torch"
set -euo pipefail

pick_python() {
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "mlwarden needs Python 3.11 or newer; none was found (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

install_mlwarden() {
    local extras="$1" python
    python=$(pick_python)
    if [ ! -x .venv/bin/python ]; then
        echo "creating .venv with $($python --version)"
        "$python" -m venv .venv
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    local target="."
    [ -n "$extras" ] && target=".[$extras]"
    echo "installing mlwarden${extras:+ with extras: $extras}"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
}
