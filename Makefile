# Common commands; see README.md.
.PHONY: fuzz fuzz-smoke fuzz-http setup build demo demo-local test test-all lint clippy xref dialyzer test-rust test-erlang test-client bench clean install uninstall test-integration bench-http bench-stream load

setup:
	sh scripts/setup.sh

# The NIF and Erlang code (rebar3), then the browser client and demo page into priv/www.
build:
	rebar3 compile
	sh scripts/build_client.sh

# The seed's workflow over real HTTP in a temporary CouchDB with the plugin switched on, then
# the node stays up for the demo page until Ctrl-C. Without a CouchDB: the in-process version.
demo: setup build
	sh scripts/with_couchdb.sh sh scripts/demo.sh

demo-local: build
	mkdir -p _build/examples
	erlc -o _build/examples examples/seed_workflow.erl
	erl -noshell -pa _build/default/lib/couch_pgp/ebin -pa _build/examples -s seed_workflow main -s init stop

test-rust:
	cd native/couch_pgp_nif && cargo test --release --locked --no-default-features --features crypto-nettle

test-erlang: build
	rebar3 eunit

# The browser client's unit tests (node's test runner, the shared vectors) and its types.
test-client: build
	cd client && npm test && npm run --silent typecheck

# Everything, against one CouchDB release found by scripts/with_couchdb.sh (COUCHDB_HOME,
# else /opt/couchdb, else ../shared/couchdb's tarball unpacked for this run only).
test: setup
	sh scripts/with_couchdb.sh $(MAKE) --no-print-directory test-all

test-all: lint test-rust test-erlang test-client test-sop test-integration

# The static checks each language has: clippy (both crates), xref, dialyzer (the core and
# couchdb_src/ against the release's own modules and headers), tsc (in test-client).
lint: clippy xref dialyzer

clippy:
	cd native/couch_pgp_nif && cargo clippy --locked --all-targets -- -D warnings
	cd native/couch_pgp_nif && cargo clippy --locked --all-targets --no-default-features --features crypto-nettle -- -D warnings
	cd native/couch_pgp_sop && cargo clippy --locked --all-targets -- -D warnings

xref: build
	rebar3 xref

dialyzer: build
	sh scripts/with_couchdb.sh sh scripts/dialyzer.sh

# Plugin install into the CouchDB 3.x release you run (COUCHDB_HOME, default /opt/couchdb).
# The tests never install into it: they copy whatever release they find.
install: build
	sh scripts/install.sh "$${COUCHDB_HOME:-/opt/couchdb}"

uninstall:
	sh scripts/uninstall.sh "$${COUCHDB_HOME:-/opt/couchdb}"

# Boots temporary copies of the release (never modified) with the plugin installed. Outside
# CI a missing CouchDB makes the suites print SKIPPED; under CI=true it fails them.
test-integration: build
	@if [ ! -f test/integration/node_modules/.package-lock.json ] \
	    || [ test/integration/package-lock.json -nt test/integration/node_modules/.package-lock.json ]; then \
	    (cd test/integration && npm ci --silent --no-audit --no-fund); fi
	COUCH_PGP_IT_PREBUILT=1 sh scripts/with_couchdb.sh \
	    node --test --test-reporter=tap test/integration/*.test.mjs

bench: setup build
	sh bench/run.sh

# Encrypted against plain PUT/GET through one temporary CouchDB (found as for the tests,
# copied, never modified); see bench/http/run.mjs. QUICK=1 for a short run.
bench-http: build
	COUCH_PGP_IT_PREBUILT=1 sh scripts/with_couchdb.sh node bench/http/run.mjs

# The node's memory while a 50,000-change feed and a 50 MiB attachment pass: plain, through
# the buffered tunnel and through the streamed tunnel (bench/stream/run.mjs). Not in make test.
bench-stream: build
	COUCH_PGP_IT_PREBUILT=1 sh scripts/with_couchdb.sh node bench/stream/run.mjs

# Encrypted writes through a three-node cluster, each acknowledged one read back through
# another node and compared (bench/load/run.mjs). LOAD_WRITES=... for fewer than 10000.
# HTTP fuzzing of a running node (test/integration/http_fuzz.test.mjs with a larger count;
# HTTP_FUZZ_SEED replays a run).
fuzz-http: build
	HTTP_FUZZ_REQUESTS=$${HTTP_FUZZ_REQUESTS:-20000} COUCH_PGP_IT_PREBUILT=1 sh scripts/with_couchdb.sh \
	    node --test --test-reporter=tap test/integration/http_fuzz.test.mjs

load: build
	COUCH_PGP_IT_PREBUILT=1 sh scripts/with_couchdb.sh node bench/load/run.mjs

clean:
	rm -rf _build priv/*.so priv/www native/couch_pgp_nif/target

# The SOP command line (native/couch_pgp_sop) against Debian's sqop: round trips both ways
# and SOP exit codes. See native/couch_pgp_sop/INTEROP.md for the interoperability suite.
.PHONY: test-sop
test-sop:
	sh test/sop/run.sh

# Coverage-guided fuzzing (notes/README-fuzz.md): each libFuzzer target in
# native/couch_pgp_nif/fuzz/ for FUZZ_SECONDS (default 60), one after the other, then the
# Erlang garbage properties with FUZZ_NUMTESTS (default 20) times their counts; prints a
# table. Needs cargo-fuzz (cargo install cargo-fuzz --locked). Not part of `make test`.
fuzz: build
	sh scripts/fuzz.sh

# A few seconds per target: the harnesses still build and run (the first build takes minutes).
fuzz-smoke:
	FUZZ_SECONDS=5 FUZZ_NUMTESTS=0 sh scripts/fuzz.sh
