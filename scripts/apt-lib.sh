# Sourced by scripts/browser-deps.sh and scripts/pg-deps.sh: how the project installs
# Debian packages. As root it runs apt-get itself, otherwise `sudo -n` (never a
# password prompt: CI has no stdin); `apt-get update` runs only when the install
# fails, e.g. on a machine whose package lists were never downloaded.

# apt_sudo: sets SUDO to "" (root) or "sudo -n"; fails when neither can run apt-get.
apt_sudo() {
    if [ "$(id -u)" = 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        return 1
    fi
}

_apt_get_install() {
    # shellcheck disable=SC2086  # $SUDO is a word list on purpose
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
        "$@" </dev/null
}

# apt_install TAG WHAT PACKAGE...: install the packages (TAG prefixes the messages;
# WHAT says what to install by hand where there is no apt-get).
apt_install() {
    tag=$1 what=$2
    shift 2
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$tag: no apt-get here; install $what by hand" >&2
        return 1
    fi
    echo "$tag: installing $* with apt-get"
    if ! _apt_get_install "$@"; then
        echo "$tag: install failed; refreshing the package lists and retrying"
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -q </dev/null
        _apt_get_install "$@"
    fi
}
