#!/bin/sh
# Vendor htmx for `murmur web` (issue #17): the pinned release from the npm registry,
# its minified file and its licence, copied into client/web/static/vendor/ and
# committed, so the page loads no script from anywhere but its own server (no CDN,
# no build step). Run it again after changing HTMX_VERSION; `npm pack` checks the
# tarball against the registry's integrity hash.
set -eu
HTMX_VERSION="${HTMX_VERSION:-2.0.11}"
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/client/web/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "htmx.org@$HTMX_VERSION" >/dev/null
tar -xzf "htmx.org-$HTMX_VERSION.tgz"
mkdir -p "$dest"
cp package/dist/htmx.min.js "$dest/htmx.min.js"
cp package/LICENSE "$dest/htmx.LICENSE"
echo "htmx.org $HTMX_VERSION" > "$dest/htmx.VERSION"
echo "vendored htmx.org $HTMX_VERSION into $dest"
