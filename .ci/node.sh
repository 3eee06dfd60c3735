# Sourced by .ci/run: puts the Node.js release named in .nvmrc first on PATH. The official build
# comes from the npm registry as the package node-linux-<arch>, so CI needs no other download
# site, and it is kept in a cache outside the clone between runs.
node_version=$(tr -d '[:space:]v' <.nvmrc)
case "$(uname -m)" in
x86_64) node_arch=x64 ;;
aarch64 | arm64) node_arch=arm64 ;;
*)
  echo "no node-linux package for $(uname -m)" >&2
  exit 1
  ;;
esac
node_prefix="${PGQ_BRIDGE_CI_CACHE:-$HOME/.cache/pgq-bridge-ci}/node-$node_version-$node_arch"
node_bin="$node_prefix/node_modules/node-linux-$node_arch/bin"
if ! "$node_bin/node" --version >/dev/null 2>&1; then
  # Installed beside the cache entry and moved into place, so an interrupted run leaves no half entry.
  rm -rf "$node_prefix.partial"
  mkdir -p "$node_prefix.partial"
  npm install --prefix "$node_prefix.partial" --no-save --no-package-lock --no-audit --no-fund \
    "node-linux-$node_arch@$node_version"
  rm -rf "$node_prefix"
  mv "$node_prefix.partial" "$node_prefix"
fi
export PATH="$node_bin:$PATH"
if [ "$(node --version)" != "v$node_version" ]; then
  echo "expected Node.js v$node_version on PATH, got $(node --version)" >&2
  exit 1
fi
echo "node $(node --version) from $node_bin, npm $(npm --version)"
