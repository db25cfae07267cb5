# shellcheck shell=bash
# The package smoke test: a .deb from scripts/package, installed with the
# system's package tool, works as a DBA would use it. Source it; it defines
# functions and sets no traps (package_smoke runs in a subshell of its own).
#
#   package_smoke MAJOR DEB PORT
#       1. moves aside what `cargo pgrx install` put in MAJOR's directories
#          (the library, the control file, every SQL script), so only the
#          package's files are there;
#       2. installs DEB with apt-get (on the host for 15, in the root of 17
#          and 18, where the repository and /tmp have the same paths);
#       3. starts a preloaded cluster pkgMAJOR on PORT and, as real roles:
#          CREATE EXTENSION (extversion = the package's version); an agent's
#          DELETE refused (42501) in a database with require_approval on; the
#          agent requests a token, the superuser grants it, the agent's DELETE
#          presenting it runs, and the same token presented again is refused;
#       4. always (a trap): stops and deletes the cluster, removes the
#          package with apt-get, and puts back what it moved aside.
#   Prints "pass:" lines, and "FAIL:" then returns non-zero on a failure.
#
# Files that someone else installs into MAJOR while the package is in place
# (scripts/test's install_extension, say) are kept, not the moved-aside ones.

_pkg_smoke_fail() {
    printf '   FAIL: %s\n' "$*" >&2
    exit 1
}

_pkg_smoke_pass() {
    printf '   pass: %s\n' "$*"
}

# _pkg_smoke_apt ARGS...: apt-get of PG_MAJOR (the host's for 15, the root's
# otherwise), waiting for the dpkg lock rather than failing on it.
_pkg_smoke_apt() {
    pg_exec env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300 "$@"
}

# _pkg_smoke_installed PACKAGE: is it installed in PG_MAJOR (host or root)?
_pkg_smoke_installed() {
    # shellcheck disable=SC2016 # dpkg-query's format, not the shell's
    [ "$(pg_exec dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# _pkg_smoke_cleanup: the EXIT trap of package_smoke's subshell.
_pkg_smoke_cleanup() {
    local rc=$?
    set +e
    trap - EXIT
    cluster_stop "pkg$PG_MAJOR"
    rm -rf "$(cluster_dir "pkg$PG_MAJOR")"
    if _pkg_smoke_installed "$_PKG_SMOKE_PACKAGE"; then
        # A package file someone replaced meanwhile is theirs: keep it.
        local f
        while IFS= read -r f; do
            if [ -f "$PG_ROOT/$f" ] && ! cmp -s "$PG_ROOT/$f" "$_PKG_SMOKE_TMP/content/$f"; then
                mkdir -p "$(dirname "$_PKG_SMOKE_TMP/newer/$f")"
                mv -f "$PG_ROOT/$f" "$_PKG_SMOKE_TMP/newer/$f"
            fi
        done < "$_PKG_SMOKE_TMP/files"
        if _pkg_smoke_apt remove "$_PKG_SMOKE_PACKAGE" >"$_PKG_SMOKE_TMP/remove.log" 2>&1 &&
            ! _pkg_smoke_installed "$_PKG_SMOKE_PACKAGE"; then
            _pkg_smoke_pass "apt-get remove $_PKG_SMOKE_PACKAGE"
        else
            cat "$_PKG_SMOKE_TMP/remove.log" >&2
            printf '   FAIL: apt-get remove %s\n' "$_PKG_SMOKE_PACKAGE" >&2
            rc=1
        fi
    fi
    # Put back what was there before (or what someone installed meanwhile).
    local from rel restored=0
    for from in newer aside; do
        [ -d "$_PKG_SMOKE_TMP/$from" ] || continue
        while IFS= read -r rel; do
            if [ -e "$PG_ROOT/$rel" ]; then
                [ "$from" = aside ] && note "kept $PG_ROOT/$rel, installed while the package was in place"
                continue
            fi
            mkdir -p "$(dirname "$PG_ROOT/$rel")"
            mv "$_PKG_SMOKE_TMP/$from/$rel" "$PG_ROOT/$rel" && restored=$((restored + 1))
        done < <(cd "$_PKG_SMOKE_TMP/$from" && find . -type f -printf '%P\n')
    done
    [ "$restored" -eq 0 ] || _pkg_smoke_pass "put back $restored file(s) that were there before the package"
    rm -rf "$_PKG_SMOKE_TMP"
    exit "$rc"
}

# package_smoke MAJOR DEB PORT (see the top of this file).
package_smoke() (
    set -euo pipefail
    local major=$1 deb port=$3
    deb=$(realpath "$2")
    [ -f "$deb" ] || { echo "package_smoke: no package $2" >&2; exit 2; }
    export AAS_PG=$major
    # shellcheck source=scripts/lib.sh
    source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
    local t0=$SECONDS

    local pkg version depends
    pkg=$(dpkg-deb -f "$deb" Package)
    version=$(dpkg-deb -f "$deb" Version)
    depends=$(dpkg-deb -f "$deb" Depends)
    say "PostgreSQL $major: package smoke test of $(basename "$deb") (cluster pkg$major, port $port)"
    [ "$depends" = "postgresql-$major" ] || _pkg_smoke_fail "$(basename "$deb") depends on '$depends', not postgresql-$major"
    # A root sees the repository and /tmp at their host paths, nothing else.
    if [ -n "$PG_ROOT" ]; then
        case "$deb" in
            "$REPO_ROOT"/*|/tmp/*) ;;
            *) _pkg_smoke_fail "the root of PostgreSQL $major sees only the repository and /tmp: $deb is elsewhere" ;;
        esac
    fi

    _PKG_SMOKE_PACKAGE=$pkg
    _PKG_SMOKE_TMP=$(mktemp -d /tmp/aas-package-smoke-"$major".XXXXXX)
    trap _pkg_smoke_cleanup EXIT
    local tmp=$_PKG_SMOKE_TMP
    dpkg-deb -x "$deb" "$tmp/content"
    (cd "$tmp/content" && find . -type f -printf '%P\n' | sort) > "$tmp/files"

    if _pkg_smoke_installed "$pkg"; then
        note "$pkg is installed already (an earlier run?): removing it first"
        _pkg_smoke_apt remove "$pkg" >"$tmp/remove-earlier.log" 2>&1 || {
            cat "$tmp/remove-earlier.log" >&2
            _pkg_smoke_fail "could not remove the $pkg installed already"
        }
    fi

    # What `cargo pgrx install` (scripts/test, scripts/demo) put there.
    local libdir extdir
    libdir=$(pg_exec "$PG_CONFIG" --pkglibdir)
    extdir=$(pg_exec "$PG_CONFIG" --sharedir)/extension
    local f rel moved=0
    for f in "$PG_ROOT$libdir/ai_agent_safety.so" "$PG_ROOT$extdir"/ai_agent_safety.control "$PG_ROOT$extdir"/ai_agent_safety--*.sql; do
        [ -f "$f" ] || continue
        rel=${f#"$PG_ROOT"/}
        mkdir -p "$(dirname "$tmp/aside/$rel")"
        mv "$f" "$tmp/aside/$rel"
        moved=$((moved + 1))
    done
    note "moved aside $moved file(s) of an earlier cargo pgrx install (put back at the end)"

    if ! _pkg_smoke_apt install "$deb" >"$tmp/install.log" 2>&1 || ! _pkg_smoke_installed "$pkg"; then
        cat "$tmp/install.log" >&2
        _pkg_smoke_fail "apt-get install $deb"
    fi
    pg_exec dpkg-query -S "$libdir/ai_agent_safety.so" 2>/dev/null | grep -q "^$pkg:" ||
        _pkg_smoke_fail "$libdir/ai_agent_safety.so does not belong to $pkg"
    _pkg_smoke_pass "apt-get install $(basename "$deb"): $(wc -l < "$tmp/files") files, $libdir/ai_agent_safety.so owned by $pkg"

    cluster_start "pkg$major" "$port" || _pkg_smoke_fail "cluster pkg$major did not start with the packaged library preloaded"
    local db=pkg_smoke agent=pkg_smoke_agent out
    dba() { psql_as postgres "$port" "$@"; }
    as_agent() { psql_as "$agent" "$port" "$db" "$@"; }

    out=$(dba postgres -At -c "SELECT current_setting('server_version_num')::int / 10000") ||
        _pkg_smoke_fail "cannot connect to cluster pkg$major on port $port"
    [ "$out" = "$major" ] || _pkg_smoke_fail "the server on port $port is PostgreSQL $out, not $major"
    dba postgres -c "CREATE DATABASE $db" || _pkg_smoke_fail "CREATE DATABASE $db"
    dba "$db" -c "CREATE EXTENSION ai_agent_safety" || _pkg_smoke_fail "CREATE EXTENSION ai_agent_safety"
    out=$(dba "$db" -At -c "SELECT extversion FROM pg_extension WHERE extname = 'ai_agent_safety'")
    [ "$out" = "$version" ] || _pkg_smoke_fail "extversion is '$out', the package is $version"
    _pkg_smoke_pass "PostgreSQL $major, packaged library preloaded: CREATE EXTENSION ai_agent_safety gives extversion $out, the package's version"

    # An agent (a member of ai_agent, with the short VALID UNTIL every agent
    # must have), a table it may delete from, and approval required.
    dba "$db" >/dev/null <<SQL || _pkg_smoke_fail "setting up the agent role and table"
DO \$\$ BEGIN
    EXECUTE format('CREATE ROLE $agent LOGIN IN ROLE ai_agent VALID UNTIL %L', now() + interval '1 hour');
END \$\$;
CREATE TABLE public.t (id int);
INSERT INTO public.t SELECT generate_series(1, 3);
GRANT SELECT, INSERT, DELETE ON public.t TO $agent;
ALTER DATABASE $db SET ai_agent_safety.require_approval = true;
SQL
    out=$(as_agent -At -c "SHOW ai_agent_safety.agent_session")
    [ "$out" = on ] || _pkg_smoke_fail "$agent's session is not an agent's (agent_session = '$out')"
    _pkg_smoke_pass "$agent (IN ROLE ai_agent) logs in as an agent; $db has require_approval = true"

    # refused_sqlstate SQL: runs SQL as the agent, prints the SQLSTATE it failed with.
    refused_sqlstate() {
        as_agent -At -v ON_ERROR_STOP=0 2>"$tmp/refusal.txt" <<SQL
$1;
\\echo :LAST_ERROR_SQLSTATE
SQL
    }
    out=$(refused_sqlstate "DELETE FROM t") || true
    [ "$out" = 42501 ] || { cat "$tmp/refusal.txt" >&2; _pkg_smoke_fail "the agent's DELETE FROM t without a token: SQLSTATE '$out', expected 42501"; }
    [ "$(dba "$db" -At -c "SELECT count(*) FROM public.t")" = 3 ] || _pkg_smoke_fail "the refused DELETE deleted rows"
    _pkg_smoke_pass "the agent's DELETE FROM t is refused with SQLSTATE 42501: $(head -1 "$tmp/refusal.txt" | cut -c1-110)..."

    local token
    token=$(as_agent -At -c "SELECT ai_agent_safety.request_approval_token('DELETE', 'pkg-smoke', 'public.t')") ||
        _pkg_smoke_fail "request_approval_token as the agent"
    [[ "$token" =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]] ||
        _pkg_smoke_fail "request_approval_token returned '$token', not a token"
    _pkg_smoke_pass "the agent's request_approval_token('DELETE', 'pkg-smoke', 'public.t') returns token $token"

    out=$(dba "$db" -At -c "SELECT ai_agent_safety.grant_approval_token('$token'::uuid, 'package smoke test')") ||
        _pkg_smoke_fail "grant_approval_token as the superuser"
    _pkg_smoke_pass "the superuser grants it (usable until $out)"

    as_agent -c "DELETE FROM t /*ai_agent_safety_token='$token'*/" ||
        _pkg_smoke_fail "the agent's DELETE FROM t with the granted token"
    [ "$(dba "$db" -At -c "SELECT count(*) FROM public.t")" = 0 ] || _pkg_smoke_fail "the DELETE with the token left rows"
    out=$(dba "$db" -At -c "SELECT status FROM ai_agent_safety.approval_token_status('$token'::uuid)")
    [ "$out" = used ] || _pkg_smoke_fail "after the DELETE, the token is '$out', not used"
    _pkg_smoke_pass "the agent's DELETE FROM t /*ai_agent_safety_token='…'*/ deletes the 3 rows; the token is now used"

    dba "$db" -c "INSERT INTO public.t VALUES (4)"
    out=$(refused_sqlstate "DELETE FROM t /*ai_agent_safety_token='$token'*/") || true
    if [ "$out" != 42501 ] || ! grep -q "already used" "$tmp/refusal.txt"; then
        cat "$tmp/refusal.txt" >&2
        _pkg_smoke_fail "the same token presented again: SQLSTATE '$out', expected 42501 (already used)"
    fi
    [ "$(dba "$db" -At -c "SELECT count(*) FROM public.t")" = 1 ] || _pkg_smoke_fail "the second DELETE with a used token deleted rows"
    _pkg_smoke_pass "the same token presented again is refused (42501, already used): a token covers one statement"

    note "PostgreSQL $major: package smoke test passed in $((SECONDS - t0)) s (cleanup follows)"
)
