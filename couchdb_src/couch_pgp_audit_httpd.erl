%% @doc `/_pgp/audit': this node's audit trail, for server admins only (401 without
%% credentials, 403 for anyone else). Answers whether the plugin is enabled or not: the
%% trail is written either way.
%%
%% `GET /_pgp/audit?since=S&limit=L': the store's state and the entries after seq S (default
%% 0) in the current file, at most L (default 1000, at most 10000).
%% `GET /_pgp/audit/file': the current file as it is on disk (for scripts/audit_verify).
%% `POST /_pgp/audit/checkpoint': write a signed checkpoint now.
%% `POST /_pgp/audit/rotate': checkpoint, rename the file to `<file>.<last seq>', continue
%% the chain in a new file.
-module(couch_pgp_audit_httpd).
-include_lib("couch/include/couch_db.hrl").

-export([handle/1]).

-define(MAX_LIMIT, 10000).
-define(CHUNK, 65536).

-spec handle(#httpd{}) -> {ok, term()}.
handle(Req) ->
    server_admin(Req),
    try
        route(Req)
    catch
        throw:{unavailable, Why} -> unavailable(Req, Why)
    end.

route(#httpd{method = 'GET', path_parts = [_, <<"audit">>]} = Req) ->
    Since = chttpd:qs_value(Req, "since", "0"),
    Limit = chttpd:qs_value(Req, "limit", "1000"),
    Status = status(),
    {Entries, Broken} = read(maps:get(file, Status), int(Since, 0, infinity),
                             int(Limit, 1, ?MAX_LIMIT)),
    chttpd:send_json(Req, 200, {status_props(Status) ++ [{<<"entries">>, Entries}]
                                ++ [{<<"unreadable_line">>, N} || N <- [Broken], N =/= null]});
route(#httpd{method = 'GET', path_parts = [_, <<"audit">>, <<"file">>]} = Req) ->
    send_file(Req, maps:get(file, status()));
route(#httpd{method = 'POST', path_parts = [_, <<"audit">>, <<"checkpoint">>]} = Req) ->
    case couch_pgp_audit_store:checkpoint() of
        ok -> chttpd:send_json(Req, 200, {[{<<"ok">>, true} | status_props(status())]});
        {error, Why} -> unavailable(Req, Why)
    end;
route(#httpd{method = 'POST', path_parts = [_, <<"audit">>, <<"rotate">>]} = Req) ->
    case couch_pgp_audit_store:rotate() of
        {ok, Old} ->
            chttpd:send_json(Req, 200, {[{<<"ok">>, true}, {<<"previous_file">>, Old}
                                         | status_props(status())]});
        {error, Why} ->
            unavailable(Req, Why)
    end;
route(#httpd{path_parts = [_, <<"audit">>]} = Req) ->
    chttpd:send_method_not_allowed(Req, "GET");
route(#httpd{path_parts = [_, <<"audit">>, Action]} = Req)
        when Action =:= <<"checkpoint">>; Action =:= <<"rotate">> ->
    chttpd:send_method_not_allowed(Req, "POST");
route(#httpd{path_parts = [_, <<"audit">>, <<"file">>]} = Req) ->
    chttpd:send_method_not_allowed(Req, "GET");
route(Req) ->
    chttpd:send_json(Req, 404, {[{<<"error">>, <<"not_found">>},
                                 {<<"reason">>, <<"No such couch_pgp endpoint.">>}]}).

%% 401 without credentials, 403 for a logged-in user who is not a server admin.
server_admin(#httpd{user_ctx = #user_ctx{name = Name, roles = Roles}}) ->
    case {lists:member(<<"_admin">>, Roles), Name} of
        {true, _} -> ok;
        {false, null} -> throw({unauthorized, <<"The audit trail is for server admins.">>});
        {false, _} -> throw({forbidden, <<"The audit trail is for server admins.">>})
    end.

status() ->
    try couch_pgp_audit_store:status()
    catch exit:{noproc, _} -> throw({unavailable, not_running})
    end.

status_props(#{file := File, seq := Seq, head := Head, unwritten := Unwritten, state := State}) ->
    [{<<"node">>, atom_to_binary(node())}, {<<"file">>, File}, {<<"seq">>, Seq},
     {<<"head">>, Head}, {<<"unwritten">>, Unwritten},
     {<<"state">>, case State of ok -> <<"ok">>; {error, Why} -> printed(Why) end}].

%% The store's own words for why it cannot write are for the operator (who is the only one
%% who may call this); a 503 with them, never a crash. CouchDB's generic error name: this
%% is not a protocol refusal (those are couch_pgp_http_errors').
unavailable(Req, Why) ->
    chttpd:send_json(Req, 503, {[{<<"error">>, <<"service_unavailable">>},
                                 {<<"reason">>, printed(Why)}]}).

printed(Term) ->
    iolist_to_binary(io_lib:format("~0P", [Term, 10])).

int(Text, Min, Max) ->
    try list_to_integer(Text) of
        N when N >= Min, (Max =:= infinity orelse N =< Max) -> N;
        _ -> throw({bad_request, <<"since and limit must be integers in range">>})
    catch error:badarg -> throw({bad_request, <<"since and limit must be integers">>})
    end.

%% Entries after `Since', at most `Limit'; stops at the first line that is not JSON and says
%% which (the verifier says why).
read(File, Since, Limit) ->
    case file:open(File, [read, raw, binary, {read_ahead, ?CHUNK}]) of
        {ok, Fd} ->
            try read(Fd, Since, Limit, 1, []) after file:close(Fd) end;
        {error, enoent} ->
            {[], null};
        {error, Why} ->
            throw({unavailable, {audit_file, Why}})
    end.

read(_Fd, _Since, 0, _LineNo, Acc) ->
    {lists:reverse(Acc), null};
read(Fd, Since, Limit, LineNo, Acc) ->
    case file:read_line(Fd) of
        {ok, Line} ->
            case couch_pgp:json_decode(string:trim(Line, trailing, "\n")) of
                {ok, {Props} = Entry} ->
                    case couch_util:get_value(<<"seq">>, Props) of
                        Seq when is_integer(Seq), Seq =< Since ->
                            read(Fd, Since, Limit, LineNo + 1, Acc);
                        _ ->
                            read(Fd, Since, Limit - 1, LineNo + 1, [Entry | Acc])
                    end;
                _ ->
                    {lists:reverse(Acc), LineNo}
            end;
        eof ->
            {lists:reverse(Acc), null};
        {error, Why} ->
            throw({unavailable, {audit_file, Why}})
    end.

send_file(Req, File) ->
    case file:open(File, [read, raw, binary]) of
        {ok, Fd} ->
            try
                {ok, Resp} = chttpd:start_chunked_response(
                               Req, 200, [{"Content-Type", "application/x-ndjson"}]),
                send_chunks(Fd, Resp)
            after
                file:close(Fd)
            end;
        {error, Why} ->
            throw({unavailable, {audit_file, Why}})
    end.

send_chunks(Fd, Resp) ->
    case file:read(Fd, ?CHUNK) of
        {ok, Data} ->
            {ok, Resp} = chttpd:send_chunk(Resp, Data),
            send_chunks(Fd, Resp);
        eof ->
            %% An empty chunk ends a chunked response (as couch_httpd:last_chunk/1 does).
            chttpd:send_chunk(Resp, []);
        {error, Why} ->
            couch_log:error("couch_pgp: audit file read failed mid-response: ~p", [Why]),
            exit({shutdown, audit_file_read})
    end.
