// Compiled by `npm run typecheck` (tsc --noEmit): the README's example, typed, must check
// against index.d.ts. Never run.
import {
  connect, Security, KeyStore, verifyDoc, canonicalJSON, PinMismatchError, CouchError,
  type Connection, type PGPResponse,
} from '../index.js';

export async function example(pin: string): Promise<string[]> {
  const couch: Connection = await connect('https://ehr.example', { pin, tunnel: 'auto', mode: 'auto',
    onExchange: (x) => { if (x.wire.mode === 'channel') console.log(x.wire.request.length); } });
  await couch.login('alice', 'secret');
  const mode: 'channel' | 'session' | undefined = couch.session?.mode;
  await connect('https://ehr.example', { pin, mode: 'session' });
  const signer = await new Security({ userID: 'Dr Alice', lifetime: 0 }).ready;
  await couch.registerCertificate(signer);
  const saved = await couch.putDoc('patients', { _id: 'p1', name: 'X' }, { signWith: signer });
  const { doc, signers } = await couch.getDoc<{ _id: string; name: string }>('patients', saved.id,
    { verifyWith: [signer] });
  const r: PGPResponse = await couch.request('/patients/_changes?since=0');
  const changes: { results: unknown[] } = await r.checked();
  const store = await KeyStore.open();
  await store.save('me', signer, { passphrase: 'pw' });
  const c = new Security();
  await c.setRemotePublicKey(await signer.getPublicKey());
  const msg: string = await c.encode('hi');
  const signed = await c.signDoc({ _id: 'x' });
  const fprs: string[] = await verifyDoc(signed, [c]);
  try { await connect('x', { pin: (f: string) => f.length === 40 }); } catch (e) {
    if (e instanceof PinMismatchError) return [e.expected, e.actual];
    if (e instanceof CouchError) return [String(e.status)];
  }
  return [doc.name, msg, String(mode), canonicalJSON(changes), ...(signers ?? []), ...fprs, signed.pgp_signatures[0].signer];
}
