// Builds what the plugin serves into priv/www (make build runs this):
//   couch_pgp.js    the client as one ES module, OpenPGP.js included (GET /_pgp/client.js)
//   couch_pgp.d.ts  its TypeScript declarations                      (GET /_pgp/client.d.ts)
//   demo.html, demo.js, demo.css  the demo page                       (GET /_pgp/demo)
//   pouchdb.js      PouchDB (core, IndexedDB, HTTP, replication) as one ES module, for the
//                   demo's offline editing                            (GET /_pgp/pouchdb.js)
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';

const here = (p) => new URL(p, import.meta.url).pathname;
const out = here('../priv/www/');
mkdirSync(out, { recursive: true });

const bundle = (entry, file, banner) => build({
  entryPoints: [here(entry)],
  outfile: `${out}${file}`,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  legalComments: 'eof', // OpenPGP.js (LGPL-3.0), PouchDB (Apache-2.0) and their parts keep their notices
  logLevel: 'warning',
  ...(banner ? { banner: { js: banner } } : {}),
});
await bundle('src/index.js', 'couch_pgp.js');
// PouchDB's published modules carry no licence comment of their own: the notice goes on top.
await bundle('vendor/pouchdb.js', 'pouchdb.js',
  '/*! PouchDB 9.0.0 (pouchdb-core, -adapter-idb, -adapter-http, -replication): Apache-2.0, '
  + 'https://pouchdb.com. events 3.3.0: MIT. */');
copyFileSync(here('index.d.ts'), `${out}couch_pgp.d.ts`);
for (const f of ['demo.html', 'demo.js', 'demo.css']) copyFileSync(here(`demo/${f}`), `${out}${f}`);
console.log('client: built priv/www');
