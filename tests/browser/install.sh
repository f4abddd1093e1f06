#!/usr/bin/env bash
# Installs what the browser tests need on a fresh Debian 12 machine (run as root):
# Debian's Chromium, Firefox ESR and fonts from apt, then playwright-core and puppeteer-core
# from the lock file. Idempotent: a second run changes nothing. Never downloads a browser
# build itself (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD and PUPPETEER_SKIP_DOWNLOAD guard it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

need_apt=()
if [ ! -x /usr/lib/chromium/chromium ] && [ ! -x /usr/bin/chromium ]; then
  need_apt+=(chromium)
fi
# Firefox ESR (firefox.test.js), driven over WebDriver BiDi: no geckodriver needed.
if [ ! -x /usr/bin/firefox-esr ]; then
  need_apt+=(firefox-esr)
fi
# Fonts: the demo page renders text labels; with no font at all Chromium logs errors.
if ! command -v fc-list >/dev/null 2>&1 || [ -z "$(fc-list 2>/dev/null | head -1)" ]; then
  need_apt+=(fontconfig fonts-dejavu-core)
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  need_apt+=(nodejs npm)
fi

if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: need root to apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${need_apt[@]}"
fi

# 20.19 is the first Node.js 20 that loads ES modules with require() (puppeteer-core is one).
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "install.sh: Node.js >= 20.19 is required (found $(node --version)); Debian 12's nodejs is 18:" >&2
  echo "  install a newer one (e.g. from the distribution's backports or NodeSource) and re-run." >&2
  exit 1
fi

cd "$here"
# npm ci wipes and reinstalls node_modules; skip it when every locked package is already
# installed at its locked version.
if node -e '
  const lock = require("./package-lock.json").packages;
  for (const [where, entry] of Object.entries(lock)) {
    if (where === "") continue;
    let installed;
    try { installed = require(`./${where}/package.json`).version; } catch { process.exit(1); }
    if (installed !== entry.version) process.exit(1);
  }' 2>/dev/null; then
  echo "install.sh: node_modules up to date"
else
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund
fi

chromium_bin=/usr/lib/chromium/chromium
[ -x "$chromium_bin" ] || chromium_bin=/usr/bin/chromium
echo "install.sh: ready: $("$chromium_bin" --version 2>/dev/null | head -1), $(/usr/bin/firefox-esr --version 2>/dev/null | head -1), node $(node --version)"
