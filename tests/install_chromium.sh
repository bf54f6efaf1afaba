#!/bin/sh
# Installs Debian's chromium for tests/test_export_browser.py (headless page check of a data
# set's index.html). Idempotent: does nothing when /usr/bin/chromium is already there.
# `make test` calls it; it needs root (or sudo) and apt-get, and says what it does.
set -eu

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    echo "install_chromium: $CHROMIUM is already installed ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium: apt-get not found; install Chromium yourself so that $CHROMIUM exists" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install_chromium: not root and no sudo; run as root: apt-get install -y chromium" >&2
    exit 1
fi

echo "install_chromium: installing Debian's chromium package with apt-get (for the browser test)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
echo "install_chromium: installed $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
