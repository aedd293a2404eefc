#!/bin/sh
# Builds the browser client and demo page into priv/www (client/build.mjs), installing the
# client's pinned npm packages first if they are not there yet.
set -eu
cd "$(dirname "$0")/../client"
[ -d node_modules ] || npm ci --silent --no-audit --no-fund
npm run --silent build
