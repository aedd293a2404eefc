%% @doc Runs the interop peers (GnuPG, sqop, OpenPGP.js) for couch_pgp_interop_tests.
%%
%% Everything a peer reads or writes goes through files in a private temp dir: stdin is
%% redirected from a file and stdout, when it carries data, into one, so binary payloads
%% never pass through argv or an Erlang port. A missing peer raises `{peer_missing, Name}'
%% rather than skipping, because setup installs all of them and a silent skip would hide
%% a broken setup.
-module(couch_pgp_peer).

-export([
    tmp_dir/0,
    remove_dir/1,
    file/2,
    write/3,
    run/3,
    run_ok/3,
    gpg_home/1,
    gpg/3,
    gpg_ok/3,
    gpg_stop/1,
    sqop/2,
    sqop_ok/2,
    openpgpjs/2,
    openpgpjs_ok/2
]).

-export_type([result/0, run_opts/0]).

-type result() :: #{status := non_neg_integer(), stdout := binary(), stderr := binary()}.
%% `stdin' and `stdout' are file names; without `stdout' the peer's stdout is returned.
%% `dir' holds the peer's stderr while it runs (default: the system temp dir); pass the
%% test's own temp dir so that a test killed mid-run leaves nothing behind.
-type run_opts() :: #{stdin => file:filename(), stdout => file:filename(),
    dir => file:filename(), timeout => pos_integer()}.

-define(DEFAULT_TIMEOUT, 60000).

%% ----------------------------------------------------------------- files

%% @doc A fresh private directory under the system temp dir.
-spec tmp_dir() -> file:filename().
tmp_dir() ->
    Dir = filename:join(tmp_base(), "couch_pgp_interop." ++ unique()),
    ok = file:make_dir(Dir),
    % Unprotected secret keys and passphrase files are written here.
    ok = file:change_mode(Dir, 8#700),
    Dir.

-spec remove_dir(file:filename()) -> ok.
remove_dir(Dir) ->
    ok = file:del_dir_r(Dir).

%% @doc A file name in `Dir' that no earlier call returned, so no peer ever finds its
%% output file already there (sqop and gpg refuse to overwrite).
-spec file(file:filename(), string()) -> file:filename().
file(Dir, Name) ->
    filename:join(Dir, unique() ++ "-" ++ Name).

%% @doc Writes `Data' to a fresh file in `Dir'; its name.
-spec write(file:filename(), string(), iodata()) -> file:filename().
write(Dir, Name, Data) ->
    Path = file(Dir, Name),
    ok = file:write_file(Path, Data),
    Path.

%% ----------------------------------------------------------------- running

%% @doc Runs `Cmd' (a name on PATH) with `Args'; its exit status, stdout and stderr.
-spec run(string(), [string()], run_opts()) -> result().
run(Cmd, Args, Opts) ->
    Exe = executable(Cmd),
    ErrFile = filename:join(maps:get(dir, Opts, tmp_base()), "stderr." ++ unique()),
    % The shell only wires up the redirections; exec keeps the OS pid the peer's own so a
    % timeout can kill exactly it.
    Script = "exec \"$0\" \"$@\" <\"$PEER_IN\" 2>\"$PEER_ERR\""
        ++ case maps:is_key(stdout, Opts) of
            true -> " >\"$PEER_OUT\"";
            false -> ""
        end,
    Env = [
        {"PEER_IN", maps:get(stdin, Opts, "/dev/null")},
        {"PEER_OUT", maps:get(stdout, Opts, "/dev/null")},
        {"PEER_ERR", ErrFile},
        % Peer output that tests parse must not be translated.
        {"LC_ALL", "C"},
        {"LANGUAGE", "C"}
    ],
    Port = open_port({spawn_executable, "/bin/sh"}, [
        {args, ["-c", Script, Exe | Args]},
        {env, Env},
        exit_status,
        binary,
        use_stdio,
        hide
    ]),
    try collect(Port, maps:get(timeout, Opts, ?DEFAULT_TIMEOUT), [], {Cmd, Args}) of
        {Status, Stdout} ->
            Stderr = case file:read_file(ErrFile) of
                {ok, E} -> E;
                {error, enoent} -> <<>>
            end,
            #{status => Status, stdout => Stdout, stderr => Stderr}
    after
        _ = file:delete(ErrFile)
    end.

%% @doc Like {@link run/3}, but a non-zero exit status raises
%% `{peer_failed, Cmd, Args, Status, Stderr}'; the peer's stdout.
-spec run_ok(string(), [string()], run_opts()) -> binary().
run_ok(Cmd, Args, Opts) ->
    case run(Cmd, Args, Opts) of
        #{status := 0, stdout := Out} ->
            Out;
        #{status := Status, stderr := Err} ->
            erlang:error({peer_failed, Cmd, Args, Status, Err})
    end.

collect(Port, Timeout, Acc, What) ->
    receive
        {Port, {data, D}} ->
            collect(Port, Timeout, [Acc, D], What);
        {Port, {exit_status, S}} ->
            {S, iolist_to_binary(Acc)}
    after Timeout ->
        case erlang:port_info(Port, os_pid) of
            {os_pid, Pid} -> _ = os:cmd("kill -9 " ++ integer_to_list(Pid));
            undefined -> ok
        end,
        catch port_close(Port),
        erlang:error({peer_timeout, What})
    end.

%% ----------------------------------------------------------------- GnuPG

%% @doc A throwaway GnuPG home directory inside `Dir'. Stop its agent with
%% {@link gpg_stop/1}.
-spec gpg_home(file:filename()) -> file:filename().
gpg_home(Dir) ->
    Home = filename:join(Dir, "gnupg." ++ unique()),
    ok = file:make_dir(Home),
    ok = file:change_mode(Home, 8#700),
    Home.

%% @doc gpg in batch mode on `Home'; passphrases come from `--passphrase-file' in `Args'
%% (loopback pinentry, so no agent ever prompts).
-spec gpg(file:filename(), [string()], run_opts()) -> result().
gpg(Home, Args, Opts) ->
    run("gpg", gpg_args(Home, Args), Opts).

-spec gpg_ok(file:filename(), [string()], run_opts()) -> binary().
gpg_ok(Home, Args, Opts) ->
    run_ok("gpg", gpg_args(Home, Args), Opts).

gpg_args(Home, Args) ->
    ["--homedir", Home, "--batch", "--no-tty", "--pinentry-mode", "loopback" | Args].

%% @doc Kills the agent (and any other daemon) gpg started for `Home'.
-spec gpg_stop(file:filename()) -> ok.
gpg_stop(Home) ->
    _ = run_ok("gpgconf", ["--homedir", Home, "--kill", "all"], #{}),
    ok.

%% ----------------------------------------------------------------- sqop, OpenPGP.js

-spec sqop([string()], run_opts()) -> result().
sqop(Args, Opts) ->
    run("sqop", Args, Opts).

-spec sqop_ok([string()], run_opts()) -> binary().
sqop_ok(Args, Opts) ->
    run_ok("sqop", Args, Opts).

%% @doc test/interop/openpgpjs/peer.mjs under node; see that file for its commands.
-spec openpgpjs([string()], run_opts()) -> result().
openpgpjs(Args, Opts) ->
    run("node", [openpgpjs_script() | Args], Opts).

-spec openpgpjs_ok([string()], run_opts()) -> binary().
openpgpjs_ok(Args, Opts) ->
    run_ok("node", [openpgpjs_script() | Args], Opts).

openpgpjs_script() ->
    % Located from this module's source, not the cwd, which rebar3 does not promise.
    Src = proplists:get_value(source, ?MODULE:module_info(compile)),
    Dir = filename:join(filename:dirname(Src), "interop/openpgpjs"),
    Script = filename:join(Dir, "peer.mjs"),
    Lib = filename:join(Dir, "node_modules/openpgp/package.json"),
    filelib:is_regular(Script) orelse erlang:error({peer_missing, Script}),
    filelib:is_regular(Lib)
        orelse erlang:error({peer_missing, "openpgp (npm ci in " ++ Dir ++ ")"}),
    Script.

%% ----------------------------------------------------------------- internal

executable(Cmd) ->
    case os:find_executable(Cmd) of
        false -> erlang:error({peer_missing, Cmd});
        Path -> Path
    end.

tmp_base() ->
    case os:getenv("TMPDIR") of
        false -> "/tmp";
        "" -> "/tmp";
        T -> T
    end.

unique() ->
    integer_to_list(erlang:unique_integer([positive])) ++ "." ++ os:getpid().
