#!/bin/sh
# Install what the browser tests (tests/web) need from Debian's packages: Chromium,
# driven by Playwright for Python through its executable path (no browser download),
# and a font so that screenshots show text. Run by `make browser-deps` (and so by
# `make test`); fast and silent when everything is already there.
#
# As root it runs apt-get itself, otherwise `sudo -n` (never a password prompt: CI has
# no stdin). `apt-get update` runs only when the install fails, e.g. on a machine whose
# package lists were never downloaded. MURMUR_SKIP_BROWSER=1 skips it (developers
# only; CI never sets it, and the browser tests then skip with that reason).
set -eu

CHROMIUM=/usr/bin/chromium
FONT_DIR=/usr/share/fonts/truetype/dejavu
PACKAGES="chromium fonts-dejavu-core"

if [ "${MURMUR_SKIP_BROWSER:-}" = 1 ]; then
    echo "browser-deps: MURMUR_SKIP_BROWSER=1, not installing Chromium (browser tests skip)"
    exit 0
fi
if [ -x "$CHROMIUM" ] && [ -d "$FONT_DIR" ]; then
    exit 0
fi

if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    cat >&2 <<EOF
browser-deps: the browser tests need Debian's Chromium ($CHROMIUM) and a font, and
this user can neither run apt-get (not root) nor 'sudo -n' without a password.
Install them once as root:
    apt-get install -y --no-install-recommends $PACKAGES
or, to run the other tests without a browser (never in CI): MURMUR_SKIP_BROWSER=1 make test
EOF
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "browser-deps: no apt-get here; install Chromium as $CHROMIUM by hand" >&2
    exit 1
fi

install() {
    # shellcheck disable=SC2086  # $SUDO and $PACKAGES are word lists on purpose
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        $PACKAGES </dev/null
}

echo "browser-deps: installing $PACKAGES with apt-get"
if ! install; then
    echo "browser-deps: install failed; refreshing the package lists and retrying"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -q </dev/null
    install
fi
if [ ! -x "$CHROMIUM" ]; then
    echo "browser-deps: apt-get finished but $CHROMIUM is missing" >&2
    exit 1
fi
"$CHROMIUM" --version
