#!/usr/bin/env bash
# What the portal's browser test (functions/local/tests/portal_browser.rs) needs: Debian's headless
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
echo "installing chromium and chromium-driver with apt-get..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
command -v chromedriver >/dev/null && command -v chromium >/dev/null
