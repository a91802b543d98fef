#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (never a downloaded browser): install it.
set -eu
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq chromium
