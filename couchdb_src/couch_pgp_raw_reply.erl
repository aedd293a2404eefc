%% @doc A channel answer sent as the binary message itself where CouchDB would send JSON.
%%
%% For a JSON response chttpd calls the before_response hook with the EJSON body and encodes
%% whatever the hook returns as JSON afterwards, so a sealed message could only leave as a
%% JSON string (`{"pgp": "<base64>"}'): a third more octets, and encoding 88 KB of base64
%% was a third of what a 64 KiB encrypted GET cost the node beyond plain (perf). When the
%% client accepts `application/pgp-encrypted', the hook returns a JSON `null' as the body
%% and, in the request it returns, this stand-in for mochiweb's request, through which
%% CouchDB sends the response (`couch_httpd:respond_/5' and `chttpd:respond_/5' call
%% `MochiReq:get(socket)' and then `MochiReq:respond({Code, Headers, Body})', as tuple
%% calls): it sends the sealed message in place of that `null'.
%%
%% Only `respond' is ever given a body; `get' answers as mochiweb does. The integration
%% suite checks the answers on the wire against the real CouchDB release.
-module(couch_pgp_raw_reply).

-export([wrap/2, get/2, respond/2]).

%% mochiweb's request is a tuple module, `{mochiweb_request, [...]}'.
-opaque reply() :: {?MODULE, tuple(), binary()}.
-export_type([reply/0]).

%% @doc The stand-in for `MochiReq' that sends `Sealed' as the body of the response.
-spec wrap(tuple(), binary()) -> reply().
wrap(MochiReq, Sealed) when is_binary(Sealed) ->
    {?MODULE, MochiReq, Sealed}.

-spec get(atom(), reply()) -> term().
get(What, {?MODULE, MochiReq, _}) ->
    mochiweb_request:get(What, MochiReq).

%% @doc Sends the response with the sealed message as its body; CouchDB's encoded
%% placeholder is dropped.
-spec respond({integer(), list(), iodata()}, reply()) -> term().
respond({Code, Headers, _Placeholder}, {?MODULE, MochiReq, Sealed}) ->
    mochiweb_request:respond({Code, Headers, Sealed}, MochiReq).
