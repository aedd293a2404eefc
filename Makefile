# Common commands; see README.md.
.PHONY: setup build demo test test-rust test-erlang bench clean

setup:
	sh scripts/setup.sh

build:
	rebar3 compile

demo: setup build
	mkdir -p _build/examples
	erlc -o _build/examples examples/seed_workflow.erl
	erl -noshell -pa _build/default/lib/couch_pgp/ebin -pa _build/examples -s seed_workflow main -s init stop

test-rust:
	cd native/couch_pgp_nif && cargo test --release --locked --no-default-features --features crypto-nettle

test-erlang: build
	rebar3 eunit

test: setup test-rust test-erlang

bench: setup build
	sh bench/run.sh

clean:
	rm -rf _build priv/*.so native/couch_pgp_nif/target
