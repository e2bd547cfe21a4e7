#!/usr/bin/env bash
# What the portal's browser tests (functions/local/tests/portal_*browser.rs) need: Debian's headless
# `chromium` and `chromium-driver` (which provides `chromedriver`). Idempotent: does nothing when
# `chromedriver` and `chromium` are already on PATH. Run as root (CI images are); the test command calls it.
set -euo pipefail

if command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "infra/browser_deps.sh: installing chromium needs root (apt-get); run: sudo bash infra/browser_deps.sh" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "infra/browser_deps.sh: no apt-get here; install Chromium and a matching chromedriver (both on PATH as" >&2
  echo "\`chromium\` and \`chromedriver\`) for the portal's browser tests" >&2
  exit 1
fi
echo "installing chromium and chromium-driver with apt-get..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
command -v chromedriver >/dev/null && command -v chromium >/dev/null
