#!/usr/bin/env bash
# GNU ddrescue 1.27's own test suite (testsuite/check.sh of Debian's gddrescue source package),
# run unmodified with salvor in ddrescue's place: ./ddrescue is `exec salvor rescue "$@"`,
# ./ddrescuelog is the real one from Debian's gddrescue package.
#
#   bash scripts/ddrescue-check.sh [SALVOR_BINARY]
#   DDRESCUE=/usr/bin/ddrescue bash scripts/ddrescue-check.sh   # the real ddrescue, for reference
#
# The source package is fetched on first use (deb-src entry for bookworm, apt-get source) and
# cached under work/cache/. Prints "FAILED N" (N checks failed) or "PASS"; exits non-zero if any
# check fails. Needs root the first time (apt).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cache=$repo/work/cache/gddrescue
salvor=${1:-$repo/target/x86_64-unknown-linux-musl/release/salvor}
salvor=$(realpath -m "$salvor")

fetch() {
  # ddrescuelog (gddrescue) and dpkg-source (dpkg-dev) come from scripts/setup.sh's list.
  if ! command -v ddrescuelog >/dev/null || ! command -v dpkg-source >/dev/null; then
    bash scripts/setup.sh
  fi
  local list=/etc/apt/sources.list.d/salvor-deb-src.sources
  if [ ! -f "$list" ]; then
    cat >"$list" <<'LIST'
# Written by salvor's scripts/ddrescue-check.sh: Debian sources, for GNU ddrescue's test suite.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
LIST
  fi
  # Update only this list (the binary lists are left as they are).
  apt-get update -q -o Dir::Etc::SourceList="$list" -o Dir::Etc::SourceParts=- \
    -o APT::Get::List-Cleanup=0 >&2
  rm -rf "$cache.tmp" && mkdir -p "$cache.tmp"
  (cd "$cache.tmp" && apt-get source -q --download-only gddrescue >&2)
  (cd "$cache.tmp" && dpkg-source -x --skip-patches ./*.dsc src >&2)
  rm -rf "$cache" && mv "$cache.tmp" "$cache"
}

[ -f "$cache/src/testsuite/check.sh" ] || fetch
src=$cache/src
version=$(sed -n 's/^pkgversion=//p; s/^VERSION=//p' "$src/configure" | head -1)
[ "$version" = 1.27 ] || { echo "expected ddrescue 1.27 sources, found '$version'" >&2; exit 1; }

# check.sh runs "$1/ddrescue" and "$1/ddrescuelog" from a build directory, with the test files
# in "$2" (testsuite/), and works in ./tmp of the current directory.
run=$(mktemp -d)
trap 'rm -rf "$run"' EXIT
mkdir "$run/bin"
if [ -n "${DDRESCUE:-}" ]; then
  ln -s "$(command -v "$DDRESCUE")" "$run/bin/ddrescue"
else
  [ -x "$salvor" ] || { echo "no salvor binary at $salvor" >&2; exit 1; }
  printf '#!/bin/sh\nexec %q rescue "$@"\n' "$salvor" >"$run/bin/ddrescue"
  chmod +x "$run/bin/ddrescue"
fi
ln -s "$(command -v ddrescuelog)" "$run/bin/ddrescuelog"
set +e
# Run from the "build directory"; bash, not sh: dash leaves $LINENO empty and check.sh names each
# failed check by its line number.
(cd "$run/bin" && bash "$src/testsuite/check.sh" "$src/testsuite" 1.27) >"$run/out" 2>"$run/err"
rc=$?
set -e
# What the tools printed on stderr, then check.sh's report.
if [ -s "$run/err" ]; then
  echo "--- stderr of the tools (last 200 lines) ---"
  tail -n 200 "$run/err"
  echo "--- check.sh ---"
fi
cat "$run/out"
echo
# Each failed check prints " LINE" or " LINE(detail)" after a "testing ...:" heading; cmp's
# "A B differ: char N, line N" reports are interleaved with them.
failed=$(grep -v '^tests' "$run/out" | sed -E 's/^testing[^.]*\.\.\.//; s#(^|[0-9 ])(/[^ ]*|out|copy|-) [^ ]+ differ: (byte|char) [0-9]+, line [0-9]+#\1#g' |
  tr ' ' '\n' | { grep -cE '^[0-9]+(\([^)]*\))?$' || true; })
if [ $rc -eq 0 ]; then
  echo "PASS: GNU ddrescue 1.27 check.sh"
  exit 0
fi
echo "FAILED $failed checks of GNU ddrescue 1.27 check.sh (exit $rc)"
exit 1
