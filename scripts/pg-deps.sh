#!/bin/sh
# Install what the PostgreSQL tests need from Debian's packages: the `postgresql`
# server (initdb, pg_ctl and postgres under /usr/lib/postgresql/*/bin), and, when run
# as root, the unprivileged system user `murmur-pg` that the test fixture
# (tests/pg.py) runs the throwaway cluster as: PostgreSQL refuses to run as root.
# Run by `make pg-deps` (and so by `make test`); fast and silent when everything is
# already there.
#
# How it installs: scripts/apt-lib.sh (apt-get as root, else `sudo -n`, never a
# prompt). MURMUR_SKIP_POSTGRES=1 skips it (developers
# only; CI never sets it, and the PostgreSQL tests then skip with that reason).
set -eu
. "$(dirname "$0")/apt-lib.sh"

PACKAGES="postgresql"
PG_USER=murmur-pg

if [ "${MURMUR_SKIP_POSTGRES:-}" = 1 ]; then
    echo "pg-deps: MURMUR_SKIP_POSTGRES=1, not installing PostgreSQL (PostgreSQL tests skip)"
    exit 0
fi

have_server() {
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            return 0
        fi
    done
    return 1
}

need_user() {
    [ "$(id -u)" = 0 ] && ! getent passwd "$PG_USER" >/dev/null 2>&1
}

if have_server && ! need_user; then
    exit 0
fi

if ! apt_sudo; then
    cat >&2 <<MSG
pg-deps: the PostgreSQL tests need Debian's PostgreSQL server (initdb and pg_ctl under
/usr/lib/postgresql/*/bin), and this user can neither run apt-get (not root) nor
'sudo -n' without a password. Install it once as root:
    apt-get install -y --no-install-recommends $PACKAGES
or, to run the other tests without PostgreSQL (never in CI): MURMUR_SKIP_POSTGRES=1 make test
MSG
    exit 1
fi

if ! have_server; then
    # shellcheck disable=SC2086  # $PACKAGES is a word list on purpose
    apt_install pg-deps "PostgreSQL (initdb, pg_ctl)" $PACKAGES
    if ! have_server; then
        echo "pg-deps: apt-get finished but no initdb/pg_ctl under /usr/lib/postgresql/*/bin" >&2
        exit 1
    fi
fi

# The fixture runs the cluster as this user when the tests run as root (a non-root
# user runs it as itself and needs none).
if need_user; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        "$PG_USER"
    echo "pg-deps: created system user $PG_USER (runs the test clusters)"
fi
