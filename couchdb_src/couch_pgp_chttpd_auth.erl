%% @doc chttpd_auth provider, consulted after CouchDB has authenticated a request.
%%
%% It lets `/_pgp' through CouchDB's default "unknown `/_xxx' paths are for admins" rule
%% (couch_pgp_httpd checks who may do what), and it binds couch_pgp sessions to their user:
%% an encrypted request must be authenticated, by CouchDB's own means, as the user the
%% session was made for. Only `authorize/1' is exported: any other export would become an
%% authentication hook.
-module(couch_pgp_chttpd_auth).
-include_lib("couch/include/couch_db.hrl").

-export([authorize/1]).

-spec authorize(#httpd{}) -> {decided, #httpd{}} | no_decision.
authorize(#httpd{user_ctx = UserCtx, path_parts = Parts} = Req) ->
    case couch_pgp_context:user() of
        SessionUser when is_binary(SessionUser) ->
            case UserCtx of
                #user_ctx{name = SessionUser} ->
                    ok;
                #user_ctx{name = Name} when is_binary(Name) ->
                    throw(couch_pgp_http_errors:to_chttpd(wrong_user));
                _ ->
                    throw(couch_pgp_http_errors:to_chttpd(no_user))
            end;
        _ ->
            %% Plaintext, or a login (whose body authenticates it).
            ok
    end,
    case Parts of
        [<<"_pgp">> | _] -> {decided, Req};
        _ -> no_decision
    end.
