#!/bin/sh
# Builds the browser client, PouchDB's bundle and the demo page into priv/www (client/build.mjs),
# installing the client's pinned npm packages first if they are not there yet or the lock file
# changed since they were installed (npm keeps its copy in node_modules/.package-lock.json).
set -eu
cd "$(dirname "$0")/../client"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --silent --no-audit --no-fund
fi
npm run --silent build
