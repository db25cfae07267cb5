#!/usr/bin/env bash
# Installs the MCP server postgres-mcp 0.3.0 (PyPI) and the mcp Python SDK
# (the client side, for drive.py) into a venv, for tests/clients.rs and for
# trying the extension with a real agent client by hand.
#
#   usage: clients/postgres-mcp/setup.sh
#   prints: the venv's python on stdout (progress goes to stderr), so
#           "$(clients/postgres-mcp/setup.sh)" drive.py ... runs the driver
#   env:   AAS_POSTGRES_MCP_VENV  the venv (default /var/cache/ai_agent_safety/postgres-mcp-venv)
#          PYTHON                 a Python >= 3.12 to build it with (default: the first found)
#          FORCE=1                rebuild the venv even if it is ready
#
# Idempotent: once the venv is built from this lock file it does nothing (well
# under a second); the first run takes about 40 s. Runs that overlap wait for
# each other (flock).
#
# Why it is not a plain `pip install postgres-mcp==0.3.0`:
#  * every postgres-mcp release needs Python >= 3.12 (0.1.0 needs 3.13); this
#    machine's python3 is 3.11 and Debian 12 has no python3.12 package, so an
#    interpreter from pyenv (~/.pyenv/versions/3.12.*) or elsewhere is used;
#  * postgres-mcp 0.1.1..0.3.0 pin pglast==7.2.0, which the registry no longer
#    serves, so postgres-mcp is installed with --no-deps and its dependencies
#    from requirements-lock.txt (complete, also --no-deps) with pglast 7.22;
#  * postgres-mcp 0.3.0 imports mcp.server.fastmcp, which mcp 2 removed, so
#    mcp stays < 2 (the lock has 1.30.0).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${AAS_POSTGRES_MCP_VENV:-/var/cache/ai_agent_safety/postgres-mcp-venv}"
LOCK="$HERE/requirements-lock.txt"
PG_MCP_VERSION="0.3.0"
STAMP="$VENV/.aas-postgres-mcp-ready"
# What the stamp must say for the venv to count as ready ("v1": this script's
# way of building it; bump it when that changes).
want="v1 postgres-mcp==$PG_MCP_VERSION lock=$(sha256sum "$LOCK" | cut -c1-16)"

log() { echo "setup.sh (postgres-mcp): $*" >&2; }

find_python() {
    local c pyenv="${PYENV_ROOT:-$HOME/.pyenv}"
    for c in ${PYTHON:-} \
        "$pyenv"/versions/3.12*/bin/python3.12 python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12 \
        "$pyenv"/versions/3.13*/bin/python3.13 python3.13 /usr/bin/python3.13 /usr/local/bin/python3.13 \
        python3; do
        [ -n "$c" ] || continue
        command -v "$c" >/dev/null 2>&1 || continue
        # A pyenv shim for a version that is installed but not selected fails
        # here, and so does a Python without the venv module: both are skipped.
        if "$c" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

build_venv() {
    local py t0=$SECONDS
    if ! py="$(find_python)"; then
        log "FAILED: postgres-mcp $PG_MCP_VERSION needs Python >= 3.12 with its venv module, and none was found"
        log "  (python3 here is $(python3 --version 2>&1 || echo 'missing'); Debian 12 packages only 3.11)."
        log "  Install one, for example \`pyenv install 3.12\` (found under \$PYENV_ROOT/versions/3.12*),"
        log "  or a distribution's python3.12 and python3.12-venv, or set PYTHON=/path/to/python3.12."
        exit 1
    fi
    log "building $VENV with $py ($("$py" --version 2>&1)), about 40 s"
    rm -rf "$VENV"
    "$py" -m venv "$VENV"
    local pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input -q)
    if ! "${pip[@]}" install --no-deps "postgres-mcp==$PG_MCP_VERSION" -r "$LOCK" >&2; then
        log "FAILED: pip could not install postgres-mcp $PG_MCP_VERSION and $LOCK (output above)."
        log "  If the registry no longer serves a pinned version, make a new lock: in a fresh venv run"
        log "  pip install --no-deps postgres-mcp==$PG_MCP_VERSION; pip install 'pglast>=7.2,<8' 'mcp[cli]>=1.5,<2' \\"
        log "    attrs humanize instructor psycopg-pool 'psycopg[binary]'; pip freeze | grep -v postgres-mcp"
        exit 1
    fi
    # The only complaint `pip check` may have is the pglast pin overridden on purpose.
    local problems
    problems="$("$VENV/bin/python" -m pip check 2>&1 | grep -v -e '^postgres-mcp .* requirement pglast==' -e '^No broken requirements' || true)"
    if [ -n "$problems" ]; then
        log "FAILED: $LOCK is not complete or not consistent (pip check):"
        echo "$problems" >&2
        exit 1
    fi
    if ! "$VENV/bin/python" -c 'import postgres_mcp.server, mcp.client.stdio' >&2; then
        log "FAILED: postgres_mcp or the mcp client does not import in $VENV"
        exit 1
    fi
    echo "$want" >"$STAMP"
    log "venv ready in $((SECONDS - t0)) s"
}

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [ "${FORCE:-0}" = 1 ] || [ ! -x "$VENV/bin/postgres-mcp" ] || [ ! -f "$STAMP" ] ||
    [ "$(cat "$STAMP")" != "$want" ]; then
    build_venv
else
    log "venv ready ($VENV)"
fi
echo "$VENV/bin/python"
