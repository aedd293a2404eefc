%% @doc The one place where couch_pgp's refusals become HTTP errors: terms that chttpd
%% already renders as `{"error": ..., "reason": ...}' with the right status.
-module(couch_pgp_http_errors).

-export([to_chttpd/1, handle_error/1]).

%% A refusal whose status chttpd has no term for: rendered by handle_error/1, the chttpd
%% provider's error hook (couch_pgp_chttpd exports it).
-define(STATUS, couch_pgp_status).

%% @doc chttpd's `handle_error' hook: our own statuses, everything else unchanged.
-spec handle_error(term()) -> [term()].
handle_error({?STATUS, {Code, Error, Reason}}) -> [{Code, Error, Reason}];
handle_error(Other) -> [Other].

-spec to_chttpd(term()) -> term().
%% 401: no usable couch_pgp session.
to_chttpd(no_session) ->
    {unauthorized, <<"couch_pgp: this request needs an X-PGP-Session token from POST /_pgp/session.">>};
to_chttpd(bad_token) ->
    {unauthorized, <<"couch_pgp: the session token is not valid here.">>};
to_chttpd(expired) ->
    {unauthorized, <<"couch_pgp: the session has expired; start a new one.">>};
to_chttpd(no_user) ->
    {unauthorized, <<"couch_pgp: log in first.">>};
%% 403: refused by policy or by signature.
to_chttpd(wrong_user) ->
    {forbidden, <<"pgp_wrong_user">>, <<"The couch_pgp session belongs to another user.">>};
to_chttpd(encryption_required) ->
    {forbidden, <<"pgp_encryption_required">>, <<"This resource accepts only encrypted requests.">>};
to_chttpd(R) when R =:= unsigned; R =:= unknown_signer; R =:= bad_signature; R =:= revoked ->
    {forbidden, <<"pgp_bad_signature">>,
     <<"The request must be signed by the client key of this session.">>};
%% 400: the message or its envelope.
to_chttpd(R) when R =:= tampered; R =:= malformed; R =:= not_encrypted; R =:= no_matching_key;
                  R =:= policy_rejected ->
    {bad_request, <<"pgp_bad_message">>,
     iolist_to_binary(["The encrypted body could not be opened (", atom_to_binary(R), ")."])};
to_chttpd(bad_envelope) ->
    {bad_request, <<"pgp_bad_envelope">>, <<"The decrypted body is not a couch_pgp request envelope.">>};
to_chttpd(R) when R =:= wrong_method; R =:= wrong_path ->
    {bad_request, <<"pgp_envelope_mismatch">>,
     <<"The envelope names another method, path or query than the request.">>};
to_chttpd(stale) ->
    {bad_request, <<"pgp_stale">>, <<"The envelope timestamp is outside the accepted clock skew.">>};
to_chttpd(replay) ->
    {bad_request, <<"pgp_replay">>, <<"This envelope nonce was already used.">>};
to_chttpd(bad_nonce) ->
    {bad_request, <<"pgp_bad_envelope">>, <<"The envelope nonce must be at least 16 random bytes.">>};
to_chttpd(too_large) ->
    request_entity_too_large;
to_chttpd({bad_request, Msg}) ->
    {bad_request, Msg};
%% 406: the answer could not be encrypted, so the request is refused.
to_chttpd(streamed) ->
    {not_acceptable, <<"couch_pgp: this endpoint streams its response, which cannot be encrypted in "
                       "place; send it through the tunnel.">>};
to_chttpd(unsupported_body) ->
    {not_acceptable, <<"couch_pgp: attachment and multipart bodies cannot be sent encrypted in place.">>};
%% 503: the node cannot do couch_pgp right now.
to_chttpd(disabled) ->
    status(503, <<"pgp_disabled">>,
           <<"couch_pgp is switched off on this node ([couch_pgp] enable = false).">>);
to_chttpd(unavailable) ->
    {service_unavailable, <<"couch_pgp: the server key is not loaded.">>};
to_chttpd(_Other) ->
    {bad_request, <<"pgp_error">>, <<"couch_pgp refused the request.">>}.

status(Code, Error, Reason) ->
    {?STATUS, {Code, Error, Reason}}.
