#!/usr/bin/env bash
# Vendor MathJax 3 into the book so that formulas typeset without any CDN.
#
# Installs the `mathjax@3` npm package into a temporary folder and copies its
# `es5/` bundle to book/_static/mathjax/ (gitignored). _config.yml points Sphinx at
# `mathjax/tex-chtml.js` inside _static, so the built book serves MathJax itself.
#
# Idempotent: does nothing when the vendored copy is already complete, unless
# FORCE=1 is set. Fails loudly (non-zero exit, message on stderr) on any error.
#
# Usage: bash .ci/fetch_mathjax.sh           (from anywhere inside the repo)
#        MATHJAX_VERSION=3.2.2 FORCE=1 bash .ci/fetch_mathjax.sh
set -euo pipefail

die() { echo "fetch_mathjax.sh: ERROR: $*" >&2; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/book/_static/mathjax"
VERSION="${MATHJAX_VERSION:-3}"
# Files the book needs; their presence marks a complete copy.
REQUIRED=(tex-chtml.js output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff)

complete() {
    local f
    for f in "${REQUIRED[@]}"; do
        [[ -s "$DEST/$f" ]] || return 1
    done
}

if [[ "${FORCE:-0}" != 1 ]] && complete; then
    echo "fetch_mathjax.sh: MathJax already vendored in ${DEST#"$ROOT"/} (FORCE=1 to refetch)"
    exit 0
fi

command -v npm >/dev/null 2>&1 || die "npm not found; install Node.js/npm (e.g. apt-get install npm)"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "fetch_mathjax.sh: npm install mathjax@$VERSION"
npm install --prefix "$TMP" --no-save --no-audit --no-fund --ignore-scripts --loglevel=error \
    "mathjax@$VERSION" >&2 || die "npm install mathjax@$VERSION failed"

SRC="$TMP/node_modules/mathjax/es5"
[[ -s "$SRC/tex-chtml.js" ]] || die "package has no es5/tex-chtml.js (unexpected layout in $SRC)"
INSTALLED="$(node -p "require('$TMP/node_modules/mathjax/package.json').version" 2>/dev/null || echo '?')"

# Copy into a sibling folder first, then swap, so an interrupted run never leaves a
# half-populated book/_static/mathjax/ behind.
mkdir -p "$ROOT/book/_static"
STAGE="$(mktemp -d "$ROOT/book/_static/.mathjax.XXXXXX")"
trap 'rm -rf "$TMP" "$STAGE"' EXIT
cp -R "$SRC/." "$STAGE/"
cp "$TMP/node_modules/mathjax/LICENSE" "$STAGE/LICENSE" 2>/dev/null || true
echo "$INSTALLED" > "$STAGE/VERSION"
rm -rf "$DEST"
mv "$STAGE" "$DEST"
chmod -R u+rwX,go+rX "$DEST"

complete || die "copy incomplete: missing one of ${REQUIRED[*]} in $DEST"
echo "fetch_mathjax.sh: vendored MathJax $INSTALLED into ${DEST#"$ROOT"/} ($(du -sh "$DEST" | cut -f1))"
