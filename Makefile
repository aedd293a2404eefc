# Common commands; see README.md.
.PHONY: setup build demo test test-rust test-erlang test-client bench clean install uninstall test-integration bench-http

setup:
	sh scripts/setup.sh

# The NIF and Erlang code (rebar3), then the browser client and demo page into priv/www.
build:
	rebar3 compile
	sh scripts/build_client.sh

demo: setup build
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

test: setup test-rust test-erlang test-client test-sop test-integration

# Plugin install into a built CouchDB 3.x release (never the one you run tests against:
# test-integration installs into its own temporary copy).
COUCHDB_HOME ?= /opt/couchdb

install: build
	sh scripts/install.sh "$(COUCHDB_HOME)"

uninstall:
	sh scripts/uninstall.sh "$(COUCHDB_HOME)"

# Boots temporary copies of $(COUCHDB_HOME) (never modified) with the plugin installed;
# the tests report as skipped when there is no CouchDB there.
test-integration: build
	@if [ ! -d test/integration/node_modules ]; then \
	    (cd test/integration && npm ci --silent --no-audit --no-fund); fi
	COUCHDB_HOME="$(COUCHDB_HOME)" COUCH_PGP_IT_PREBUILT=1 \
	    node --test --test-reporter=tap test/integration/*.test.mjs

bench: setup build
	sh bench/run.sh

# Encrypted against plain PUT/GET through one temporary CouchDB ($(COUCHDB_HOME), copied,
# never modified); see bench/http/run.mjs. QUICK=1 for a short run.
bench-http: build
	COUCHDB_HOME="$(COUCHDB_HOME)" COUCH_PGP_IT_PREBUILT=1 node bench/http/run.mjs

clean:
	rm -rf _build priv/*.so priv/www native/couch_pgp_nif/target

# The SOP command line (native/couch_pgp_sop) against Debian's sqop: round trips both ways
# and SOP exit codes. See native/couch_pgp_sop/INTEROP.md for the interoperability suite.
.PHONY: test-sop
test-sop:
	sh test/sop/run.sh
