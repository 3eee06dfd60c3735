#!/usr/bin/env bash
# Runs the Dockerfile's build steps in a scratch directory, then starts the built bridge the way
# the image does (check-config on the example config), so a broken image build fails CI even
# where no Docker engine runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$root/package.json" "$root/package-lock.json" "$root/tsconfig.json" "$root/tsconfig.build.json" "$work/"
cp -r "$root/src" "$work/src"
cd "$work"
# --- the build stage ---
npm ci --ignore-scripts --no-audit --no-fund >/dev/null
npm run build >/dev/null
npm prune --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null
# --- the runtime stage: only these reach the image ---
mkdir image
cp -r dist node_modules package.json image/
cp -r "$root/sql" image/sql
cp "$root/LICENSE" image/
cd image
node dist/main.js check-config --config "$root/config.example.json" >/dev/null
if [ -d node_modules/typescript ] || [ -d node_modules/tsx ]; then
  echo "dev dependencies leaked into the runtime image" >&2
  exit 1
fi
echo "image build steps OK ($(du -sh node_modules | cut -f1) of production node_modules)"
