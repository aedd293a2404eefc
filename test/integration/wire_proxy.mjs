// A recording HTTP proxy on 127.0.0.1, put between a client (node or Chromium) and CouchDB
// so that a test sees every exchange as it crossed the network: request line, headers and
// body, response status, headers and body (after HTTP framing: chunked bodies joined,
// gzip/deflate opened, so a plaintext split across chunks or compressed is still found).
// Clients talk to proxy.url as if it were CouchDB; nothing is changed on the way.
import http from 'node:http';
import zlib from 'node:zlib';

export class WireProxy {
  /** @type {{method: string, url: string, reqHeaders: object, reqBody: Buffer, status: number, resHeaders: object, resBody: Buffer}[]} */
  exchanges = [];
  recording = true;
  #server; #agent; #target;

  static async start(target) {
    const p = new WireProxy();
    p.#target = new URL(target);
    p.#agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    p.#server = http.createServer((req, res) => p.#forward(req, res));
    await new Promise((resolve) => p.#server.listen(0, '127.0.0.1', resolve));
    p.url = `http://127.0.0.1:${p.#server.address().port}`;
    return p;
  }

  #forward(req, res) {
    const reqChunks = [];
    const record = this.recording;
    req.on('data', (c) => reqChunks.push(c));
    const up = http.request({
      host: this.#target.hostname, port: this.#target.port, method: req.method, path: req.url,
      headers: { ...req.headers, host: this.#target.host }, agent: this.#agent,
    }, (upRes) => {
      res.writeHead(upRes.statusCode, upRes.rawHeaders);
      const resChunks = [];
      upRes.on('data', (c) => { resChunks.push(c); res.write(c); });
      upRes.on('end', () => {
        res.end();
        if (!record) return;
        this.exchanges.push({
          method: req.method, url: req.url, reqHeaders: req.headers, reqBody: Buffer.concat(reqChunks),
          status: upRes.statusCode, resHeaders: upRes.headers,
          resBody: decoded(Buffer.concat(resChunks), upRes.headers['content-encoding']),
        });
      });
      upRes.on('error', () => res.destroy());
    });
    up.on('error', () => { if (!res.headersSent) { res.writeHead(502); res.end(); } else res.destroy(); });
    // A client that goes away (an aborted longpoll, Chromium going offline) ends the upstream request too.
    res.on('close', () => { if (!res.writableFinished) up.destroy(); });
    req.pipe(up);
  }

  /** Each exchange as one latin1 text (request line, headers, bodies): what to search for leaks. */
  texts() {
    return this.exchanges.map((e) => [`${e.method} ${e.url}`, JSON.stringify(e.reqHeaders), e.reqBody.toString('latin1'),
      String(e.status), JSON.stringify(e.resHeaders), e.resBody.toString('latin1')].join('\n'));
  }

  /** The first of `secrets` found on the wire, with where, or null. Every secret must be at
   *  least KEY characters long: they are indexed by their first KEY characters and each
   *  position of the wire text is looked up once (searching megabytes once per secret, for
   *  thousands of secrets, takes minutes). */
  leak(secrets) {
    const KEY = 12;
    const index = new Map();
    for (const s of secrets) {
      if (s.length < KEY) throw new Error(`leak(): a secret shorter than ${KEY} characters cannot be searched: ${JSON.stringify(s)}`);
      const k = s.slice(0, KEY);
      if (!index.has(k)) index.set(k, []);
      index.get(k).push(s);
    }
    const texts = this.texts();
    for (let t = 0; t < texts.length; t++) {
      const text = texts[t];
      for (let i = 0; i + KEY <= text.length; i++) {
        const found = index.get(text.slice(i, i + KEY))?.find((s) => text.startsWith(s, i));
        if (found) return { secret: found, where: `${this.exchanges[t].method} ${this.exchanges[t].url}` };
      }
    }
    return null;
  }

  async stop() {
    this.#agent.destroy();
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}

function decoded(body, encoding) {
  if (encoding === 'gzip') return zlib.gunzipSync(body);
  if (encoding === 'deflate') return zlib.inflateSync(body);
  if (encoding === 'br') return zlib.brotliDecompressSync(body);
  return body;
}
