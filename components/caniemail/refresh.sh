#!/bin/sh
# Refresh the vendored caniemail.com data (`make caniemail`): fetch the npm package
# `caniemail` (MIT), which ships the site's data file, and replace caniemail.json,
# LICENSE and README.md here. Usage: refresh.sh [VERSION]  (default: the "latest" dist-tag)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
version=${1:-$(npm view caniemail@latest version)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# Pack the exact version: a bare `npm pack caniemail` takes the newest release whose
# "engines" field accepts the local Node (Node 20 got 1.0.5 while "latest" was 2.0.2).
npm pack --loglevel=error --pack-destination "$tmp" "caniemail@$version" >/dev/null
tar -xzf "$tmp"/caniemail-*.tgz -C "$tmp"
data="$tmp/package/data/caniemail.json"
test -f "$data" || { echo "refresh.sh: no data/caniemail.json in caniemail@$version" >&2; exit 1; }
test -f "$tmp/package/LICENSE" || { echo "refresh.sh: no LICENSE in caniemail@$version" >&2; exit 1; }

# Refuse a file components/support.py could not read (the shape it relies on).
updated=$(node -e '
  const d = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const ok = Array.isArray(d.data) && d.data.length > 100 &&
    d.data.every(f => f.slug && f.title && f.category && typeof f.stats === "object");
  if (!ok) { console.error("refresh.sh: unexpected caniemail.json layout"); process.exit(1); }
  console.log(d.last_update_date || "unknown");
' "$data")

cp "$data" "$here/caniemail.json"
cp "$tmp/package/LICENSE" "$here/LICENSE"
cat > "$here/README.md" <<README
# caniemail.com data

\`caniemail.json\` is the feature support data of [caniemail.com](https://www.caniemail.com/),
copied unchanged from the npm package [\`caniemail\`](https://www.npmjs.com/package/caniemail)
$version (\`data/caniemail.json\`; data updated $updated), MIT licensed: see \`LICENSE\`.

\`components/support.py\` reads it to check built emails against the configured clients.
Refresh it with \`make caniemail\` (\`components/caniemail/refresh.sh [VERSION]\`), run the
tests, and review the change as a diff.
README
echo "caniemail $version (data updated $updated) -> $here"
