#!/bin/sh
# Install what the browser tests (tests/web) need from Debian's packages: Chromium,
# driven by Playwright for Python through its executable path (no browser download),
# and a font so that screenshots show text. Run by `make browser-deps` (and so by
# `make test`); fast and silent when everything is already there.
#
# How it installs: scripts/apt-lib.sh (apt-get as root, else `sudo -n`, never a
# prompt). MURMUR_SKIP_BROWSER=1 skips it (developers
# only; CI never sets it, and the browser tests then skip with that reason).
set -eu
. "$(dirname "$0")/apt-lib.sh"

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

if ! apt_sudo; then
    cat >&2 <<EOF
browser-deps: the browser tests need Debian's Chromium ($CHROMIUM) and a font, and
this user can neither run apt-get (not root) nor 'sudo -n' without a password.
Install them once as root:
    apt-get install -y --no-install-recommends $PACKAGES
or, to run the other tests without a browser (never in CI): MURMUR_SKIP_BROWSER=1 make test
EOF
    exit 1
fi
# shellcheck disable=SC2086  # $PACKAGES is a word list on purpose
apt_install browser-deps "Chromium as $CHROMIUM" $PACKAGES
if [ ! -x "$CHROMIUM" ]; then
    echo "browser-deps: apt-get finished but $CHROMIUM is missing" >&2
    exit 1
fi
"$CHROMIUM" --version
