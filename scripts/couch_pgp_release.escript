#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noshell
%% Helper for scripts/install.sh and scripts/uninstall.sh: edits Erlang terms in a CouchDB
%% release (releases/sys.config, the couch_pgp .app file) and checks the compiled plugin.
%% Every command prints one line about what it did and exits 0, or prints "error: ..." on
%% stderr and exits 1. Nothing is written unless the content changes.
%%
%%   register   <release> <epi_module>   add the module to couch_epi's plugin list in
%%                                       sys.config (the full list: sys.config's own, else
%%                                       couch_epi.app's); back up sys.config once first
%%   unregister <release> <epi_module>   undo register (restore the backup if sys.config is
%%                                       still exactly what register produced from it)
%%   vsn        <app_file>               print the application's vsn
%%   app-modules <app_file> <ebin>       set the .app modules list to the beams in ebin
%%   check-epi  <ebin> <release> <epi_module>
%%                                       verify the plugin module and its providers load
-mode(compile).

-define(BACKUP_SUFFIX, ".couch_pgp-backup").

main(["register", Rel, Mod]) -> run(fun() -> register_plugin(Rel, list_to_atom(Mod)) end);
main(["unregister", Rel, Mod]) -> run(fun() -> unregister_plugin(Rel, list_to_atom(Mod)) end);
main(["vsn", AppFile]) -> run(fun() -> app_vsn(AppFile) end);
main(["app-modules", AppFile, Ebin]) -> run(fun() -> app_modules(AppFile, Ebin) end);
main(["check-epi", Ebin, Rel, Mod]) -> run(fun() -> check_epi(Ebin, Rel, list_to_atom(Mod)) end);
main(_) ->
    io:format(standard_error,
              "usage: couch_pgp_release.escript register|unregister <release> <module>~n"
              "       couch_pgp_release.escript vsn <app_file>~n"
              "       couch_pgp_release.escript app-modules <app_file> <ebin>~n"
              "       couch_pgp_release.escript check-epi <ebin> <release> <module>~n", []),
    halt(2).

run(Fun) ->
    try Fun() of
        _ -> halt(0)
    catch
        throw:{error, Fmt, Args} ->
            io:format(standard_error, "error: " ++ Fmt ++ "~n", Args),
            halt(1)
    end.

fail(Fmt, Args) -> throw({error, Fmt, Args}).

%% ---- sys.config ----------------------------------------------------------------------

sys_config(Rel) -> filename:join([Rel, "releases", "sys.config"]).

consult(File) ->
    case file:consult(File) of
        {ok, [Term]} -> Term;
        {ok, Terms} -> fail("~ts: expected exactly one term, found ~b", [File, length(Terms)]);
        {error, Reason} -> fail("cannot read ~ts: ~ts", [File, file:format_error(Reason)])
    end.

read_sys_config(File) ->
    case consult(File) of
        L when is_list(L) -> L;
        _ -> fail("~ts: not a list of application settings", [File])
    end.

%% couch_epi's built-in plugin list, from lib/couch_epi-*/ebin/couch_epi.app.
default_plugins(Rel) ->
    case filelib:wildcard(filename:join([Rel, "lib", "couch_epi-*", "ebin", "couch_epi.app"])) of
        [] -> fail("no lib/couch_epi-*/ebin/couch_epi.app in ~ts", [Rel]);
        [AppFile | _] ->
            case consult(AppFile) of
                {application, couch_epi, Props} ->
                    Env = proplists:get_value(env, Props, []),
                    case proplists:get_value(plugins, Env) of
                        L when is_list(L), L =/= [] -> L;
                        _ -> fail("~ts has no plugins list in env", [AppFile])
                    end;
                _ ->
                    fail("~ts is not a couch_epi application file", [AppFile])
            end
    end.

%% The plugin list in effect: sys.config's own if it sets one, else the .app default.
current_plugins(Rel, Terms) ->
    case lists:keyfind(couch_epi, 1, [T || T <- Terms, is_tuple(T)]) of
        {couch_epi, Env} when is_list(Env) ->
            case lists:keyfind(plugins, 1, Env) of
                {plugins, L} when is_list(L) -> L;
                false -> default_plugins(Rel);
                _ -> fail("sys.config: couch_epi plugins is not a list", [])
            end;
        {couch_epi, _} -> fail("sys.config: couch_epi settings are not a list", []);
        false -> default_plugins(Rel)
    end.

set_plugins(Terms, Plugins) ->
    case lists:keymember(couch_epi, 1, [T || T <- Terms, is_tuple(T)]) of
        true ->
            [case T of
                 {couch_epi, Env} -> {couch_epi, lists:keystore(plugins, 1, Env, {plugins, Plugins})};
                 _ -> T
             end || T <- Terms];
        false ->
            Terms ++ [{couch_epi, [{plugins, Plugins}]}]
    end.

with_plugin(Rel, Terms, Mod) ->
    Plugins = current_plugins(Rel, Terms),
    case lists:member(Mod, Plugins) of
        true -> Terms;
        false -> set_plugins(Terms, Plugins ++ [Mod])
    end.

warn_includes(File, Terms) ->
    [io:format(standard_error,
               "warning: ~ts includes ~ts; a couch_epi plugin list set there is not seen here~n",
               [File, T]) || T <- Terms, is_list(T)],
    ok.

register_plugin(Rel, Mod) ->
    File = sys_config(Rel),
    Terms = read_sys_config(File),
    warn_includes(File, Terms),
    case with_plugin(Rel, Terms, Mod) of
        Terms ->
            io:format("sys.config: ~s already registered~n", [Mod]);
        New ->
            Backup = File ++ ?BACKUP_SUFFIX,
            case filelib:is_regular(Backup) of
                true -> ok;
                false -> copy_file(File, Backup)
            end,
            write_terms(File, New),
            io:format("sys.config: registered ~s (original kept in ~ts)~n",
                      [Mod, filename:basename(Backup)])
    end.

unregister_plugin(Rel, Mod) ->
    File = sys_config(Rel),
    Backup = File ++ ?BACKUP_SUFFIX,
    case {filelib:is_regular(File), filelib:is_regular(Backup)} of
        {false, true} ->
            ok = file:rename(Backup, File),
            io:format("sys.config: restored from ~ts~n", [filename:basename(Backup)]);
        {false, false} ->
            io:format("sys.config: not present, nothing to do~n");
        {true, HasBackup} ->
            Terms = read_sys_config(File),
            Original = case HasBackup of
                           true -> read_sys_config(Backup);
                           false -> undefined
                       end,
            case HasBackup andalso with_plugin(Rel, Original, Mod) =:= Terms of
                true ->
                    %% Untouched since install: put the original bytes back.
                    ok = file:rename(Backup, File),
                    io:format("sys.config: restored from ~ts~n", [filename:basename(Backup)]);
                false ->
                    Without = [case T of
                                   {couch_epi, Env} when is_list(Env) ->
                                       case lists:keyfind(plugins, 1, Env) of
                                           {plugins, L} when is_list(L) ->
                                               {couch_epi, lists:keystore(plugins, 1, Env,
                                                                          {plugins, L -- [Mod]})};
                                           _ -> T
                                       end;
                                   _ -> T
                               end || T <- Terms],
                    case Without of
                        Terms -> io:format("sys.config: ~s not registered~n", [Mod]);
                        _ ->
                            write_terms(File, Without,
                                        "%% couch_pgp_epi removed by couch_pgp's "
                                        "scripts/uninstall.sh.\n"),
                            io:format("sys.config: removed ~s~s~n",
                                      [Mod, case HasBackup of
                                                true -> " (file changed since install; "
                                                        "kept other edits, dropped the backup)";
                                                false -> ""
                                            end])
                    end,
                    case HasBackup of
                        true -> ok = file:delete(Backup);
                        false -> ok
                    end
            end
    end.

copy_file(From, To) ->
    {ok, Bin} = file:read_file(From),
    write_like(From, To, Bin),
    {ok, Info} = file:read_file_info(From),
    ok = file:change_time(To, element(6, Info)).   % keep the original mtime too

write_terms(File, Terms) ->
    write_terms(File, Terms,
                io_lib:format("%% couch_epi plugin list edited by couch_pgp's scripts/install.sh;~n"
                              "%% scripts/uninstall.sh undoes it (the original is kept in~n"
                              "%% sys.config~s until then).~n", [?BACKUP_SUFFIX])).

write_terms(File, Terms, Header) ->
    Text = io_lib:format("~s~n~tp.~n", [Header, Terms]),
    Bin = unicode:characters_to_binary(Text),
    %% Never write something the VM could not read back.
    {ok, Toks, _} = erl_scan:string(unicode:characters_to_list(Bin)),
    {ok, Terms} = erl_parse:parse_term(Toks),
    write_like(File, File, Bin).

%% Write atomically, keeping the mode of Like.
write_like(Like, File, Bin) ->
    Tmp = File ++ ".tmp",
    ok = file:write_file(Tmp, Bin),
    case file:read_file_info(Like) of
        {ok, Info} -> ok = file:change_mode(Tmp, element(8, Info) band 8#7777);
        _ -> ok
    end,
    ok = file:rename(Tmp, File).

%% ---- application file -----------------------------------------------------------------

app_vsn(AppFile) ->
    {application, _, Props} = consult(AppFile),
    io:format("~s~n", [proplists:get_value(vsn, Props)]).

app_modules(AppFile, Ebin) ->
    {application, App, Props} = consult(AppFile),
    Mods = lists:sort([list_to_atom(filename:basename(F, ".beam"))
                       || F <- filelib:wildcard(filename:join(Ebin, "*.beam"))]),
    New = {application, App, lists:keystore(modules, 1, Props, {modules, Mods})},
    ok = file:write_file(AppFile, io_lib:format("~tp.~n", [New])),
    io:format("~s.app: ~b modules~n", [App, length(Mods)]).

%% ---- plugin sanity -------------------------------------------------------------------
%% A couch_epi plugin that cannot be loaded, or that names a provider module that does
%% not exist, stops CouchDB from booting; refuse before registering it.

-define(EPI_CALLBACKS, [{app, 0}, {providers, 0}, {services, 0}, {data_subscriptions, 0},
                        {data_providers, 0}, {processes, 0}, {notify, 3}]).

check_epi(Ebin, Rel, Mod) ->
    Beam = filename:join(Ebin, atom_to_list(Mod) ++ ".beam"),
    filelib:is_regular(Beam) orelse fail("~ts missing", [Beam]),
    {ok, {Mod, [{exports, Exports}]}} = beam_lib:chunks(Beam, [exports]),
    case ?EPI_CALLBACKS -- Exports of
        [] -> ok;
        Missing -> fail("~s does not export ~p", [Mod, Missing])
    end,
    true = code:add_patha(Ebin),
    {module, Mod} = code:load_abs(filename:rootname(Beam)),
    Providers = try Mod:providers()
                catch C:R -> fail("~s:providers() raised ~p:~p", [Mod, C, R])
                end,
    is_list(Providers) orelse fail("~s:providers() is not a list", [Mod]),
    Found = fun(M) ->
                    filelib:is_regular(filename:join(Ebin, atom_to_list(M) ++ ".beam")) orelse
                        filelib:wildcard(filename:join([Rel, "lib", "*", "ebin",
                                                        atom_to_list(M) ++ ".beam"])) =/= []
            end,
    [case P of
         {_Service, M} when is_atom(M) ->
             Found(M) orelse fail("~s:providers() names ~s, which has no beam", [Mod, M]);
         _ ->
             fail("~s:providers(): bad entry ~p", [Mod, P])
     end || P <- Providers],
    io:format("~s: callbacks exported, ~b provider module(s) present~n", [Mod, length(Providers)]).
