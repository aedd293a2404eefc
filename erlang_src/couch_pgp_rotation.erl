%% @doc The identity's history: which keys came before the current one, how each endorsed
%% its successor, and which keys are revoked. Pure data; couch_pgp_keystore keeps it on
%% disk beside the key file and `GET /_pgp' announces it (README "Keys over time").
%%
%% An endorsement is a detached signature by the old identity key over the RFC 8785 text
%% `{"action":"rotate","new_fingerprint":N,"old_fingerprint":O,"rotated_at":T,"until":U,"v":1}'
%% (seconds): a client that pinned O and sees it can move its pin to N without asking
%% anyone, until U. A revocation is the revoked key's certificate carrying a key revocation
%% signature by that key (couch_pgp:revoke/3), so any OpenPGP implementation can check it.
-module(couch_pgp_rotation).

-export([new/1, current/1, endorse/4, rotated/3, verify_endorsement/1, revoked/2,
         is_revoked/2, previous/2, announce/2, to_json/1, from_json/1]).
-export_type([state/0, previous/0, revocation/0]).

-type previous() :: #{fingerprint := couch_pgp:fingerprint(), cert := couch_pgp:cert(),
                      next := couch_pgp:fingerprint(), rotated_at := integer(),
                      until := integer(), statement := binary(), signature := binary()}.
-type revocation() :: #{fingerprint := couch_pgp:fingerprint(),
                        reason := couch_pgp:revocation_reason(), message := binary(),
                        revoked_at := integer(), revocation := couch_pgp:cert()}.
-type state() :: #{current := couch_pgp:fingerprint(), previous := [previous()],
                   revocations := [revocation()]}.

%% Keys kept in the history: older ones are dropped at the next rotation (their overlap
%% has long ended; their revocations, if any, stay).
-define(MAX_PREVIOUS, 16).

%% @doc The history of an identity that has never rotated.
-spec new(couch_pgp:fingerprint()) -> state().
new(Fpr) ->
    #{current => Fpr, previous => [], revocations => []}.

-spec current(state()) -> couch_pgp:fingerprint().
current(#{current := Fpr}) -> Fpr.

%% @doc `OldKey''s endorsement of `NewFpr', made at `Now', honoured until `Until' (unix
%% seconds).
-spec endorse(couch_pgp:key(), couch_pgp:fingerprint(), integer(), integer()) ->
    {ok, previous()} | {error, couch_pgp:reason()}.
endorse(OldKey, NewFpr, Now, Until) ->
    OldFpr = couch_pgp:fingerprint(OldKey),
    {ok, Statement} = couch_pgp:canonical_json(statement(OldFpr, NewFpr, Now, Until)),
    case couch_pgp:sign(Statement, OldKey) of
        {ok, Sig} ->
            {ok, #{fingerprint => OldFpr, cert => couch_pgp:public_cert(OldKey), next => NewFpr,
                   rotated_at => Now, until => Until, statement => Statement,
                   signature => Sig}};
        {error, _} = Error ->
            Error
    end.

statement(OldFpr, NewFpr, Now, Until) ->
    {[{<<"v">>, 1}, {<<"action">>, <<"rotate">>}, {<<"old_fingerprint">>, OldFpr},
      {<<"new_fingerprint">>, NewFpr}, {<<"rotated_at">>, Now}, {<<"until">>, Until}]}.

%% @doc The history after `State''s current key was replaced by `NewFpr' with `Endorsement'.
-spec rotated(state(), previous(), couch_pgp:fingerprint()) -> state().
rotated(#{current := Old, previous := Prev} = State, #{fingerprint := Old} = Endorsement, NewFpr) ->
    Kept = lists:sublist([P || #{fingerprint := F} = P <- Prev, F =/= NewFpr], ?MAX_PREVIOUS - 1),
    State#{current := NewFpr, previous := [Endorsement | Kept]}.

%% @doc Whether an endorsement is what it says: signed by the certificate it names, over
%% exactly the statement its fields make.
-spec verify_endorsement(previous()) -> ok | {error, term()}.
verify_endorsement(#{fingerprint := Old, cert := Cert, next := New, rotated_at := At,
                     until := Until, statement := Statement, signature := Sig}) ->
    case couch_pgp:canonical_json(statement(Old, New, At, Until)) of
        {ok, Statement} ->
            case {couch_pgp:fingerprint(Cert), couch_pgp:verify(Statement, Sig, [Cert])} of
                {Old, {ok, Old}} -> ok;
                {Old, {error, _} = Error} -> Error;
                {_, _} -> {error, wrong_cert}
            end;
        _ ->
            {error, statement_mismatch}
    end.

%% @doc The history with `Revocation' added (one per fingerprint: the first one stays).
-spec revoked(state(), revocation()) -> state().
revoked(#{revocations := Revs} = State, #{fingerprint := Fpr} = Revocation) ->
    case is_revoked(State, Fpr) of
        true -> State;
        false -> State#{revocations := Revs ++ [Revocation]}
    end.

-spec is_revoked(state(), couch_pgp:fingerprint()) -> boolean().
is_revoked(#{revocations := Revs}, Fpr) ->
    lists:any(fun(#{fingerprint := F}) -> F =:= Fpr end, Revs).

%% @doc The earlier key `Fpr', if the history has it.
-spec previous(state(), couch_pgp:fingerprint()) -> {ok, previous()} | error.
previous(#{previous := Prev}, Fpr) ->
    case [P || #{fingerprint := F} = P <- Prev, F =:= Fpr] of
        [P | _] -> {ok, P};
        [] -> error
    end.

%% @doc The members `GET /_pgp' adds for clients at `Now': the earlier keys still in their
%% overlap, with their endorsements, and every revocation (for as long as the history
%% keeps it: always).
-spec announce(state(), integer()) -> [{binary(), list()}].
announce(#{previous := Prev, revocations := Revs}, Now) ->
    [{<<"previous">>, [{[{<<"fingerprint">>, F}, {<<"cert">>, C}, {<<"until">>, U},
                         {<<"endorsement">>, St}, {<<"endorsement_signature">>, Sig}]}
                       || #{fingerprint := F, cert := C, until := U, statement := St,
                            signature := Sig} <- Prev, U > Now]},
     {<<"revocations">>, [revocation_json(R) || R <- Revs]}].

revocation_json(#{fingerprint := F, reason := Reason, message := Msg, revoked_at := At,
                  revocation := Rev}) ->
    {[{<<"fingerprint">>, F}, {<<"reason">>, atom_to_binary(Reason)}, {<<"message">>, Msg},
      {<<"revoked_at">>, At}, {<<"revocation">>, Rev}]}.

%% @doc The history as the JSON text kept on disk.
-spec to_json(state()) -> binary().
to_json(#{current := Cur, previous := Prev, revocations := Revs}) ->
    {ok, Text} = couch_pgp:canonical_json({[
        {<<"v">>, 1},
        {<<"current">>, Cur},
        {<<"previous">>, [{[{atom_to_binary(K), V} || {K, V} <- maps:to_list(P)]} || P <- Prev]},
        {<<"revocations">>, [revocation_json(R) || R <- Revs]}
    ]}),
    Text.

%% @doc The history from its JSON text; anything of another shape is `{error, bad_state}'.
-spec from_json(binary()) -> {ok, state()} | {error, bad_state}.
from_json(Text) ->
    try
        {ok, {Props}} = couch_pgp:json_decode(Text),
        1 = proplists:get_value(<<"v">>, Props),
        Cur = binary(proplists:get_value(<<"current">>, Props)),
        Prev = [previous_of(P) || P <- proplists:get_value(<<"previous">>, Props)],
        Revs = [revocation_of(R) || R <- proplists:get_value(<<"revocations">>, Props)],
        {ok, #{current => Cur, previous => Prev, revocations => Revs}}
    catch
        error:_ -> {error, bad_state}
    end.

previous_of({Props}) ->
    Get = fun(K) -> proplists:get_value(K, Props) end,
    #{fingerprint => binary(Get(<<"fingerprint">>)), cert => binary(Get(<<"cert">>)),
      next => binary(Get(<<"next">>)), rotated_at => int(Get(<<"rotated_at">>)),
      until => int(Get(<<"until">>)), statement => binary(Get(<<"statement">>)),
      signature => binary(Get(<<"signature">>))}.

revocation_of({Props}) ->
    Get = fun(K) -> proplists:get_value(K, Props) end,
    #{fingerprint => binary(Get(<<"fingerprint">>)), reason => reason(Get(<<"reason">>)),
      message => binary(Get(<<"message">>)), revoked_at => int(Get(<<"revoked_at">>)),
      revocation => binary(Get(<<"revocation">>))}.

binary(B) when is_binary(B) -> B.
int(I) when is_integer(I) -> I.
reason(<<"unspecified">>) -> unspecified;
reason(<<"superseded">>) -> superseded;
reason(<<"compromised">>) -> compromised;
reason(<<"retired">>) -> retired.
