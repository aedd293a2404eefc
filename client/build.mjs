// Builds what the plugin serves into priv/www (make build runs this):
//   couch_pgp.js    the client as one ES module, OpenPGP.js included (GET /_pgp/client.js)
//   couch_pgp.d.ts  its TypeScript declarations                      (GET /_pgp/client.d.ts)
//   demo.html, demo.js, demo.css  the demo page                       (GET /_pgp/demo)
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';

const here = (p) => new URL(p, import.meta.url).pathname;
const out = here('../priv/www/');
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [here('src/index.js')],
  outfile: `${out}couch_pgp.js`,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  minify: true,
  legalComments: 'eof', // OpenPGP.js (LGPL-3.0) and its parts keep their notices
  logLevel: 'warning',
});
copyFileSync(here('index.d.ts'), `${out}couch_pgp.d.ts`);
for (const f of ['demo.html', 'demo.js', 'demo.css']) copyFileSync(here(`demo/${f}`), `${out}${f}`);
console.log('client: built priv/www');
