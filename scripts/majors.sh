# PostgreSQL majors other than the host's 15, in root filesystems made with
# debootstrap (sourced by lib.sh; defines functions, sets no traps).
#
# PostgreSQL 17 and 18 come from Debian trixie and forky. Their binaries need
# a newer glibc than Debian 12 has, so each major lives in its own root,
# /var/tmp/aas-roots/MAJOR, entered with chroot from a mount namespace of
# its own (`root_enter`: nothing stays mounted on the host):
#   - the host's /tmp is bind-mounted as the root's /tmp, so a cluster's
#     socket and data directory have the same path inside and out: host tools
#     (psql -h /tmp, the Rust integration tests) reach it unchanged;
#   - the Rust toolchain (~/.cargo, ~/.rustup) and the repository are
#     bind-mounted at their host paths, so the extension is built inside the
#     root against that major's headers, into target/pgMAJOR;
#   - the root's postgres user has the host's uid and gid, so files in /tmp
#     belong to the same user on both sides.
#
#   root_ensure MAJOR   create the root (once) and its packages; idempotent, cached
#   in_root MAJOR CMD...         run CMD as root inside it
#   in_root_postgres MAJOR CMD...  run CMD as postgres inside it

ROOTS_DIR=${AAS_ROOTS_DIR:-/var/tmp/aas-roots}

root_dir() { echo "$ROOTS_DIR/$1"; }

root_suite() {
    case "$1" in
        17) echo trixie ;;
        18) echo forky ;;
        *) echo "no Debian suite known for PostgreSQL $1 (15 is the host's; 17 and 18 have roots)" >&2; return 1 ;;
    esac
}

# root_enter MAJOR USERSPEC HOME CMD...: runs CMD in the root, in a mount
# namespace of its own. What the root shares with the host is mounted in
# that namespace only, so nothing stays mounted under the root on the host
# (deleting a root can never reach the host's /tmp, toolchain or repository
# through a bind mount), and a server started inside keeps its mounts for
# as long as it runs.
root_enter() {
    local major=$1 userspec=$2 home=$3; shift 3
    local root; root=$(root_dir "$major")
    local cargo_home=${CARGO_HOME:-$HOME/.cargo} rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
    local d
    for d in "$cargo_home" "$rustup_home" "$REPO_ROOT"; do mkdir -p "$root$d"; done
    unshare --mount --propagation private -- /bin/bash -c '
        set -e
        root=$1 userspec=$2 home=$3 major=$4 cargo_home=$5 rustup_home=$6 repo=$7 target=$8
        shift 8
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount --bind /tmp "$root/tmp"
        for d in "$cargo_home" "$rustup_home" "$repo"; do mount --bind "$d" "$root$d"; done
        exec chroot --userspec="$userspec" "$root" /usr/bin/env -i \
            HOME="$home" \
            PATH="$cargo_home/bin:/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            CARGO_HOME="$cargo_home" RUSTUP_HOME="$rustup_home" CARGO_TARGET_DIR="$target" \
            LANG=C.UTF-8 TERM=dumb "$@"
    ' root_enter "$root" "$userspec" "$home" "$major" "$cargo_home" "$rustup_home" \
        "$REPO_ROOT" "$REPO_ROOT/target/pg$major" "$@"
}

in_root() {
    local major=$1; shift
    root_enter "$major" 0:0 /root "$@"
}

in_root_postgres() {
    local major=$1; shift
    root_enter "$major" postgres:postgres /var/lib/postgresql "$@"
}

# The packages a root holds: that major's server and headers, and what
# pgrx needs to build against them (clang for bindgen, a C toolchain).
root_packages() {
    echo "postgresql-$1 postgresql-server-dev-$1 postgresql-client-$1 libclang-dev clang gcc make pkg-config ca-certificates sudo"
}

# Unmount everything under the root (deepest first).
root_umount() {
    local root; root=$(root_dir "$1")
    local m
    for m in $(awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}

root_ensure() {
    local major=$1 suite root
    suite=$(root_suite "$major") || return 1
    root=$(root_dir "$major")
    local log=/tmp/aas-root-$major.log
    if [ ! -f "$root/.aas-bootstrapped" ]; then
        note "making the PostgreSQL $major root in $root (debootstrap $suite, a few minutes, once)"
        dpkg -s debootstrap >/dev/null 2>&1 || {
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        }
        # Debian 12's debootstrap has no script for forky; forky's is sid's.
        local script=/usr/share/debootstrap/scripts/$suite
        [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
        # Never delete through a bind mount (the host's /tmp, the toolchain,
        # the repository are mounted in a root).
        root_umount "$major"
        if grep -q " $root/" /proc/mounts; then
            echo "$root still has mounts; not deleting it" >&2
            return 1
        fi
        rm -rf "$root"
        mkdir -p "$ROOTS_DIR"
        if ! debootstrap --variant=minbase "$suite" "$root" http://deb.debian.org/debian "$script" >"$log" 2>&1; then
            tail -30 "$log" >&2
            echo "debootstrap of $suite into $root failed (log: $log)" >&2
            return 1
        fi
        # The host's postgres uid and gid, before the server package makes its own.
        local uid gid
        uid=$(id -u postgres) gid=$(id -g postgres)
        chroot "$root" groupadd -g "$gid" postgres
        chroot "$root" useradd -u "$uid" -g "$gid" -d /var/lib/postgresql -s /bin/bash postgres 2>/dev/null
        # The registry's testing suites can carry a Release file whose
        # Valid-Until has passed; the packages themselves are still signed.
        echo 'Acquire::Check-Valid-Until "false";' > "$root/etc/apt/apt.conf.d/99aas-valid-until"
        touch "$root/.aas-bootstrapped"
    fi
    # Mounts left by an older version of this script.
    root_umount "$major"
    # shellcheck disable=SC2046
    if ! in_root "$major" dpkg -s $(root_packages "$major") >/dev/null 2>&1; then
        note "installing PostgreSQL $major and its build tools into $root"
        # No cluster of the package's own: the scripts make theirs in /tmp.
        mkdir -p "$root/etc/postgresql-common/createcluster.d"
        echo "create_main_cluster = false" > "$root/etc/postgresql-common/createcluster.d/aas.conf"
        if ! in_root "$major" sh -c "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends $(root_packages "$major")" >>"$log" 2>&1; then
            tail -30 "$log" >&2
            echo "installing PostgreSQL $major into $root failed (log: $log)" >&2
            return 1
        fi
    fi
    if ! in_root "$major" sh -c "grep -qs pg$major \$HOME/.pgrx/config.toml"; then
        in_root "$major" sh -c "cd '$REPO_ROOT' && cargo pgrx init --pg$major /usr/lib/postgresql/$major/bin/pg_config" >/dev/null
    fi
}
