"""Signing in through a tenant's own OpenID Connect provider (Authlib's Flask client).

The only module that talks OpenID Connect. Authorization code flow with PKCE (S256), ``state``
and ``nonce`` kept in the session by Authlib; discovery from the issuer; the ID token's
signature (JWKS fetched from the provider, cached, and fetched again when a token names a key
id the cache does not hold), issuer, audience, expiry and nonce are all checked by
:func:`verify_id_token`, which the callback and the tests share.

Errors come out as two kinds: :class:`ProviderUnavailable` (the provider did not answer, or
answered nonsense) and :class:`SignInRefused` with a ``reason`` code the domain turns into a
sentence.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from typing import Any

import requests
from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app, request
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    InvalidTokenError,
    JoseError,
    MissingClaimError,
)

log = logging.getLogger(__name__)

#: Seconds to wait for the provider (discovery, keys, token exchange).
PROVIDER_TIMEOUT_S = 10
#: Clock difference tolerated between the provider and us when checking exp/iat.
LEEWAY_S = 60
SCOPES = "openid email profile groups"


class ProviderUnavailable(Exception):
    """The provider did not answer (or not with OpenID Connect)."""


class SignInRefused(Exception):
    """The provider's answer is not acceptable; ``reason`` says why, for the person's message.

    Reasons: state (the reply belongs to no sign-in started here), denied (the person or the
    provider cancelled), audience, issuer, expired, nonce, signature (no published key signed
    it), token (anything else wrong with the ID token).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Provider:
    """A tenant's provider as the adapter needs it (the secret already read from its source)."""

    key: str
    issuer: str
    client_id: str
    client_secret: str


_registry_lock = threading.Lock()


def _client(provider: Provider) -> Any:
    """The Authlib client for ``provider``, made once per app and settings (discovery and keys
    are cached on it; changed settings or secret make a new one)."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    oauth: OAuth | None = app.extensions.get("cloud_portal_oidc")
    with _registry_lock:
        if oauth is None:
            oauth = OAuth(app)
            app.extensions["cloud_portal_oidc"] = oauth
        fingerprint = hashlib.sha256("|".join(
            (provider.issuer, provider.client_id, provider.client_secret)).encode()).hexdigest()[:12]
        name = f"{provider.key}_{fingerprint}"
        client = oauth.create_client(name)
        if client is None:
            client = oauth.register(
                name, client_id=provider.client_id, client_secret=provider.client_secret,
                server_metadata_url=f"{provider.issuer}/.well-known/openid-configuration",
                client_kwargs={"scope": SCOPES, "code_challenge_method": "S256",
                               "default_timeout": PROVIDER_TIMEOUT_S})
        return client


def _metadata(provider: Provider) -> dict[str, Any]:
    try:
        metadata: dict[str, Any] = _client(provider).load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"{provider.issuer}: {exc}") from exc
    if metadata.get("issuer", "").rstrip("/") != provider.issuer:
        raise ProviderUnavailable(f"{provider.issuer}: discovery names issuer {metadata.get('issuer')!r}")
    return metadata


def authorization_url(provider: Provider, redirect_uri: str, login_hint: str | None = None) -> str:
    """Where to send the person to sign in; state, nonce and the PKCE verifier go in the session."""
    _metadata(provider)
    client = _client(provider)
    extra = {"login_hint": login_hint} if login_hint else {}
    try:
        result = client.create_authorization_url(redirect_uri, **extra)
    except (requests.RequestException, RuntimeError) as exc:
        raise ProviderUnavailable(f"{provider.issuer}: {exc}") from exc
    client.save_authorize_data(redirect_uri=redirect_uri, **result)
    return str(result["url"])


def complete_sign_in(provider: Provider) -> tuple[dict[str, Any], str]:
    """Finish the flow the current request (the provider's redirect back) belongs to: check
    the state, exchange the code, verify the ID token. Returns (claims, raw ID token)."""
    client = _client(provider)
    if request.args.get("error"):
        raise SignInRefused("denied", str(request.args.get("error_description") or request.args["error"]))
    state = request.args.get("state")
    state_data = client.framework.get_state_data(request_session(), state) if state else None
    if not state_data or not request.args.get("code"):
        raise SignInRefused("state", "no sign-in was started here with this state")
    client.framework.clear_state_data(request_session(), state)
    _metadata(provider)
    params = client._format_state_params(state_data, {"code": request.args["code"], "state": state})  # noqa: SLF001
    try:
        token = client.fetch_access_token(**params)
    except MismatchingStateError as exc:
        raise SignInRefused("state", str(exc)) from exc
    except OAuthError as exc:
        raise SignInRefused("token", f"the provider refused the code: {exc.error}") from exc
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"{provider.issuer}: {exc}") from exc
    if "id_token" not in token:
        raise SignInRefused("token", "the provider sent no ID token")
    nonce = state_data.get("nonce")
    if not nonce:
        raise SignInRefused("nonce", "this sign-in has no nonce")
    claims = verify_id_token(provider, token["id_token"], nonce, access_token=token.get("access_token"))
    return claims, token["id_token"]


def request_session() -> Any:
    from flask import session
    return session


def verify_id_token(provider: Provider, id_token: str, nonce: str, *,
                    access_token: str | None = None) -> dict[str, Any]:
    """The ID token's claims, once its signature (by a key the provider publishes), issuer,
    audience (our client id), expiry and nonce are checked; SignInRefused saying which failed."""
    metadata = _metadata(provider)
    client = _client(provider)
    token: dict[str, Any] = {"id_token": id_token}
    if access_token:
        token["access_token"] = access_token
    options = {"iss": {"essential": True, "values": [metadata["issuer"]]},
               "aud": {"essential": True, "values": [provider.client_id]},
               "exp": {"essential": True}, "nonce": {"essential": True, "value": nonce}}
    try:
        claims = client.parse_id_token(token, nonce=nonce, claims_options=options, leeway=LEEWAY_S)
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"{provider.issuer}: keys: {exc}") from exc
    except ExpiredTokenError as exc:
        raise SignInRefused("expired", str(exc)) from exc
    except (InvalidClaimError, MissingClaimError) as exc:
        claim = getattr(exc, "claim", "")
        reason = {"aud": "audience", "iss": "issuer", "nonce": "nonce", "exp": "expired"}.get(claim, "token")
        raise SignInRefused(reason, str(exc)) from exc
    except (InvalidKeyIdError, BadSignatureError) as exc:
        raise SignInRefused("signature", str(exc)) from exc
    except (InvalidTokenError, JoseError, ValueError) as exc:
        raise SignInRefused("token", str(exc)) from exc
    return dict(claims)


def logout_url(provider: Provider, id_token_hint: str | None, post_logout_redirect_uri: str) -> str | None:
    """The provider's end-session URL (RP-initiated logout), or None when it offers none."""
    try:
        metadata = _metadata(provider)
    except ProviderUnavailable:
        return None
    if not metadata.get("end_session_endpoint"):
        return None
    result = _client(provider).create_logout_url(post_logout_redirect_uri=post_logout_redirect_uri,
                                                 id_token_hint=id_token_hint, client_id=provider.client_id)
    return str(result["url"])
