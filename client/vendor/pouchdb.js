// The PouchDB the demo page uses, bundled into priv/www/pouchdb.js (GET /_pgp/pouchdb.js):
// PouchDB's core, its IndexedDB adapter (the browser's local database), its HTTP adapter (the
// remote, which takes the client's pouchFetch) and replication. PouchDB is Apache-2.0; the
// bundle keeps its notices.
import PouchDB from 'pouchdb-core';
import IdbAdapter from 'pouchdb-adapter-idb';
import HttpAdapter from 'pouchdb-adapter-http';
import Replication from 'pouchdb-replication';

PouchDB.plugin(IdbAdapter).plugin(HttpAdapter).plugin(Replication);

export default PouchDB;
