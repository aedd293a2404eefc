%% @doc The one place where couch_pgp's refusals become HTTP errors: terms that chttpd
%% already renders as `{"error": ..., "reason": ...}' with the right status, or, for the
%% statuses and error strings chttpd has no term for, `{couch_pgp_status, {Code, Error,
%% Reason}}', rendered by handle_error/1 (the chttpd provider's error hook).
%%
%% The list of reasons is closed: reasons/0 names every one, to_chttpd/1 has one clause
%% each and nothing else, and test/vectors/errors.json is the same table (the integration
%% suite renders every row through chttpd on a live node and compares; the browser client's
%% tests map every row to its error class). The core's reasons (couch_pgp:reason()) are
%% translated by from_decrypt/1 and from_cert/1, because one core atom means different
%% things in different places: `expired' is a signer's key on a message and a client's
%% certificate on a login, neither of them a session.
-module(couch_pgp_http_errors).

-export([to_chttpd/1, handle_error/1, reasons/0, from_decrypt/1, from_cert/1]).

-export_type([reason/0]).

-define(STATUS, couch_pgp_status).

-type reason() ::
    %% 401
    no_session | bad_token | session_expired | session_revoked | no_user
    %% 403
    | wrong_user | encryption_required | unsigned | unknown_signer | bad_signature
    | signer_unusable | no_registration_proof | bad_registration_proof | no_user_doc
    %% 400
    | tampered | malformed | not_encrypted | no_matching_key | policy_rejected
    | bad_envelope | bad_nonce | head_not_supported | wrong_method | wrong_path | stale | replay
    | no_channel | no_cert | bad_cert | cert_expired | cert_revoked | cert_not_yet_valid
    | cert_policy_rejected | no_encryption_key
    | tunnel_plaintext | tunnel_request | tunnel_base64 | stream_needs_channel
    %% 404
    | cert_not_registered
    %% 406
    | streamed | unsupported_body
    %% 413
    | too_large
    %% 500
    | internal
    %% 503
    | disabled | unavailable | tunnel_unreachable.

%% @doc Every reason to_chttpd/1 takes, in the order of test/vectors/errors.json.
-spec reasons() -> [reason()].
reasons() ->
    [no_session, bad_token, session_expired, session_revoked, no_user,
     wrong_user, encryption_required, unsigned, unknown_signer, bad_signature,
     signer_unusable, no_registration_proof, bad_registration_proof, no_user_doc,
     tampered, malformed, not_encrypted, no_matching_key, policy_rejected,
     bad_envelope, bad_nonce, head_not_supported, wrong_method, wrong_path, stale, replay,
     no_channel, no_cert, bad_cert, cert_expired, cert_revoked, cert_not_yet_valid,
     cert_policy_rejected, no_encryption_key,
     tunnel_plaintext, tunnel_request, tunnel_base64, stream_needs_channel,
     cert_not_registered,
     streamed, unsupported_body,
     too_large,
     internal,
     disabled, unavailable, tunnel_unreachable].

%% @doc chttpd's `handle_error' hook: our own statuses, everything else unchanged.
-spec handle_error(term()) -> [term()].
handle_error({?STATUS, {Code, Error, Reason}}) -> [{Code, Error, Reason}];
handle_error(Other) -> [Other].

%% @doc The chttpd error term for a refusal.
-spec to_chttpd(reason()) -> term().
%% 401: no usable couch_pgp session, or no login.
to_chttpd(no_session) ->
    {unauthorized, <<"couch_pgp: this request needs an X-PGP-Session token from POST /_pgp/session.">>};
to_chttpd(bad_token) ->
    {unauthorized, <<"couch_pgp: the session token is not valid here.">>};
to_chttpd(session_expired) ->
    status(401, <<"pgp_session_expired">>, <<"couch_pgp: the session has expired; start a new one.">>);
to_chttpd(session_revoked) ->
    status(401, <<"pgp_session_revoked">>,
           <<"couch_pgp: the operator invalidated sessions started before the token secret "
             "was rotated; start a new one.">>);
to_chttpd(no_user) ->
    {unauthorized, <<"couch_pgp: log in first.">>};
%% 403: refused by policy or by signature.
to_chttpd(wrong_user) ->
    {forbidden, <<"pgp_wrong_user">>, <<"The couch_pgp session belongs to another user.">>};
to_chttpd(encryption_required) ->
    {forbidden, <<"pgp_encryption_required">>, <<"This resource accepts only encrypted requests.">>};
to_chttpd(unsigned) ->
    {forbidden, <<"pgp_bad_signature">>,
     <<"The request is not signed; it must be signed by the client key of this session.">>};
to_chttpd(unknown_signer) ->
    {forbidden, <<"pgp_bad_signature">>,
     <<"The request is signed by another key than the client key of this session.">>};
to_chttpd(bad_signature) ->
    {forbidden, <<"pgp_bad_signature">>, <<"The request's signature does not verify.">>};
to_chttpd(signer_unusable) ->
    {forbidden, <<"pgp_bad_signature">>,
     <<"The key that signed the request is expired, revoked or not yet valid.">>};
to_chttpd(no_registration_proof) ->
    {forbidden, <<"pgp_bad_signature">>,
     <<"Send \"signature\": an armored detached signature by the certificate's own key over "
       "{\"action\":\"register\",\"fingerprint\":F,\"user\":U} (RFC 8785).">>};
to_chttpd(bad_registration_proof) ->
    {forbidden, <<"pgp_bad_signature">>,
     <<"The signature must be by the certificate's own key, over "
       "{\"action\":\"register\",\"fingerprint\":F,\"user\":U} (RFC 8785).">>};
to_chttpd(no_user_doc) ->
    {forbidden, <<"pgp_no_user_doc">>,
     <<"This user has no _users document to register certificates on "
       "(server admins from the config have none).">>};
%% 400: the message or its envelope.
to_chttpd(R) when R =:= tampered; R =:= malformed; R =:= not_encrypted; R =:= no_matching_key;
                  R =:= policy_rejected ->
    {bad_request, <<"pgp_bad_message">>,
     iolist_to_binary(["The encrypted body could not be opened (", atom_to_binary(R), ")."])};
to_chttpd(bad_envelope) ->
    {bad_request, <<"pgp_bad_envelope">>, <<"The decrypted body is not a couch_pgp request envelope.">>};
to_chttpd(bad_nonce) ->
    {bad_request, <<"pgp_bad_envelope">>, <<"The envelope nonce must be at least 16 random bytes.">>};
to_chttpd(head_not_supported) ->
    {bad_request, <<"pgp_bad_envelope">>,
     <<"An encrypted request cannot be HEAD (its answer has no body to encrypt); send GET.">>};
to_chttpd(no_channel) ->
    {bad_request, <<"pgp_no_channel">>,
     <<"This session has no channel keys (its token predates them): start a new session, "
       "or send the request in the per-message mode.">>};
to_chttpd(R) when R =:= wrong_method; R =:= wrong_path ->
    {bad_request, <<"pgp_envelope_mismatch">>,
     <<"The envelope names another method, path or query than the request.">>};
to_chttpd(stale) ->
    {bad_request, <<"pgp_stale">>, <<"The envelope timestamp is outside the accepted clock skew.">>};
to_chttpd(replay) ->
    {bad_request, <<"pgp_replay">>, <<"This envelope nonce was already used.">>};
to_chttpd(no_cert) ->
    {bad_request, <<"pgp_bad_cert">>,
     <<"Send the armored OpenPGP certificate (\"client_cert\" for a session, \"cert\" to register one).">>};
to_chttpd(bad_cert) ->
    {bad_request, <<"pgp_bad_cert">>, <<"The certificate is not one OpenPGP certificate.">>};
to_chttpd(cert_expired) ->
    {bad_request, <<"pgp_bad_cert">>, <<"The certificate has expired.">>};
to_chttpd(cert_revoked) ->
    {bad_request, <<"pgp_bad_cert">>, <<"The certificate is revoked.">>};
to_chttpd(cert_not_yet_valid) ->
    {bad_request, <<"pgp_bad_cert">>, <<"The certificate is not valid yet.">>};
to_chttpd(cert_policy_rejected) ->
    {bad_request, <<"pgp_bad_cert">>, <<"The certificate uses algorithms the policy rejects.">>};
to_chttpd(no_encryption_key) ->
    {bad_request, <<"pgp_bad_cert">>,
     <<"The certificate has no valid encryption key: answers could not be encrypted to it.">>};
to_chttpd(tunnel_plaintext) ->
    {bad_request, <<"pgp_tunnel_plaintext">>, <<"The tunnel only takes encrypted requests.">>};
to_chttpd(tunnel_request) ->
    {bad_request, <<"pgp_tunnel_request">>,
     <<"The inner request needs method, an absolute path (not the tunnel), query and body "
       "strings, and headers as an object of strings.">>};
to_chttpd(tunnel_base64) ->
    {bad_request, <<"pgp_tunnel_request">>, <<"Bad base64 body.">>};
to_chttpd(stream_needs_channel) ->
    {bad_request, <<"pgp_stream_needs_channel">>,
     <<"A streamed tunnel answer is sealed with the session channel: send the request with X-PGP-Channel: 1.">>};
%% 404
to_chttpd(cert_not_registered) ->
    {not_found, <<"No such certificate registered to this user.">>};
%% 406: the answer could not be encrypted, so the request is refused before it runs.
to_chttpd(streamed) ->
    {not_acceptable, <<"couch_pgp: this endpoint streams its response, which cannot be encrypted in "
                       "place; send it through the tunnel.">>};
to_chttpd(unsupported_body) ->
    {not_acceptable, <<"couch_pgp: attachment and multipart bodies cannot be sent encrypted in place.">>};
%% 413: CouchDB's own.
to_chttpd(too_large) ->
    request_entity_too_large;
%% 500: never expected; the node's log says what happened.
to_chttpd(internal) ->
    status(500, <<"pgp_internal">>, <<"couch_pgp could not process the request; see the node's log.">>);
%% 503: the node cannot do couch_pgp right now.
to_chttpd(disabled) ->
    status(503, <<"pgp_disabled">>,
           <<"couch_pgp is switched off on this node ([couch_pgp] enable = false).">>);
to_chttpd(unavailable) ->
    status(503, <<"pgp_unavailable">>, <<"The server's OpenPGP key is not loaded.">>);
to_chttpd(tunnel_unreachable) ->
    status(503, <<"pgp_tunnel_unreachable">>, <<"couch_pgp: the tunnel could not reach this node.">>).

%% @doc The refusal for a core error met while opening a request message (couch_pgp:decrypt/3).
%% A key state on a message is the signer's; reasons that a message cannot cause are
%% `internal', and logged.
-spec from_decrypt(couch_pgp:reason()) -> reason().
from_decrypt(R) when R =:= tampered; R =:= malformed; R =:= not_encrypted;
                     R =:= no_matching_key; R =:= policy_rejected; R =:= unsigned;
                     R =:= unknown_signer; R =:= bad_signature; R =:= too_large;
                     R =:= bad_envelope ->
    R;
from_decrypt(R) when R =:= expired; R =:= revoked; R =:= not_yet_valid ->
    signer_unusable;
from_decrypt(R) ->
    unexpected(decrypt, R).

%% @doc The refusal for a core error met while importing a client's certificate.
-spec from_cert(couch_pgp:reason()) -> reason().
from_cert(bad_cert) -> bad_cert;
from_cert(malformed) -> bad_cert;
from_cert(expired) -> cert_expired;
from_cert(revoked) -> cert_revoked;
from_cert(not_yet_valid) -> cert_not_yet_valid;
from_cert(policy_rejected) -> cert_policy_rejected;
from_cert(no_encryption_key) -> no_encryption_key;
from_cert(R) -> unexpected(cert, R).

unexpected(What, R) ->
    couch_log:error("couch_pgp: unexpected ~s error ~p", [What, R]),
    internal.

status(Code, Error, Reason) ->
    {?STATUS, {Code, Error, Reason}}.
