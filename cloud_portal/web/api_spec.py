"""The API's contract, enforced and published from one place.

Each /api/v1 view declares its query parameters, body and answers (one pydantic model for every
status it can give) with :func:`operation`. spectree checks the request against the models
before the view runs (a failure is a 400 ``invalid`` naming the field), checks the answer
against its model when ``API_VALIDATE_RESPONSES`` is on (always under tests), and writes the
OpenAPI document at /api/v1/openapi.json from the same models, so the document cannot drift
from what the code accepts and answers.

Errors everywhere under /api/v1 are ``{"error": "<sentence>", "code": "<ErrorCode>"}``: from
the views (PortalErrors, mapped in api_auth.token_required), from validation, and from Flask
itself for an unknown address (404), a wrong method (405) or a crash (500).
"""
from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any, TypeVar

from flask import Flask, current_app, jsonify, request
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from pydantic import BaseModel, Field, ValidationError
from spectree import Response as Answers
from spectree import SecurityScheme, SecuritySchemeData, SpecTree
from spectree.models import SecureType
from spectree.plugins.flask_plugin import FlaskPlugin
from werkzeug.exceptions import HTTPException

from cloud_portal.errors import InvalidInput
from cloud_portal.i18n import LANGUAGES, N_, _, current_language

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])

API_PREFIX = "/api/v1/"


class ErrorCode(StrEnum):
    """The stable ``code`` of every error answer (the sentence in ``error`` may change; these don't)."""

    invalid = "invalid"
    unauthorised = "unauthorised"
    token_expired = "token_expired"  # noqa: S105 - an error code, not a secret
    read_only_token = "read_only_token"  # noqa: S105 - likewise
    organisation_inactive = "organisation_inactive"
    forbidden = "forbidden"
    not_found = "not_found"
    method_not_allowed = "method_not_allowed"
    quota_exceeded = "quota_exceeded"
    no_console = "no_console"
    cloud_error = "cloud_error"
    internal = "internal"


#: Each code's status and what it means (shown on the docs page).
ERROR_CODE_MEANINGS: dict[ErrorCode, tuple[int, Any]] = {
    ErrorCode.invalid: (400, _l("A parameter or body field is wrong or missing, or the request is not possible in "
                             "the current state; the sentence names the field or the reason.")),
    ErrorCode.unauthorised: (401, _l("No token, or one that is unknown or revoked.")),
    ErrorCode.token_expired: (401, _l("The token has expired; make a new one.")),
    ErrorCode.read_only_token: (403, _l("A read-only token was used to change something.")),
    ErrorCode.organisation_inactive: (403, _l("The caller's organisation is no longer a member of the portal.")),
    ErrorCode.forbidden: (403, _l("The caller's role does not allow this.")),
    ErrorCode.not_found: (404, _l("No such address, or nothing with that id that the caller may see.")),
    ErrorCode.method_not_allowed: (405, _l("The address does not accept that HTTP method.")),
    ErrorCode.quota_exceeded: (409, _l("Accepting it would take the tenant or the person over a quota.")),
    ErrorCode.no_console: (409, _l("The cloud offers no console for the server right now.")),
    ErrorCode.cloud_error: (502, _l("The cloud could not do it; the sentence says what happened.")),
    ErrorCode.internal: (500, _l("A fault in the portal (there should be none); it is logged.")),
}


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    #: A sentence a person can act on; for a validation error it starts with the field's name.
    error: str = Field(description="a sentence a person can act on; for a bad field it starts with its name")
    code: ErrorCode = Field(description="stable: what kind of error (see the error codes)")


def error_response(message: str, status: int, code: ErrorCode | str) -> Any:
    """An error answer in the API's one shape."""
    return jsonify({"error": message, "code": str(code)}), status


class ResponseBreaksContract(RuntimeError):
    """A view answered something its declared model does not allow (a bug in the portal)."""


class _PortalFlaskPlugin(FlaskPlugin):
    """spectree's Flask plugin, checking answers only when the app asks for it: the check parses
    each answer again, which production may skip (see API_VALIDATE_RESPONSES in config.py)."""

    def validate_response(self, resp: Any, resp_model: Any, skip_validation: bool,
                          force_resp_serialize: bool) -> Any:
        if not (current_app.config.get("API_VALIDATE_RESPONSES") or current_app.testing):
            return current_app.make_response(resp), None
        return super().validate_response(resp, resp_model, skip_validation, force_resp_serialize)


def validation_sentence(exc: ValidationError) -> str:
    """The first problem of a failed validation as ``"<field>: <what is wrong>"``."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    if first["type"] == "literal_error":
        # pydantic lists them in English ("'mine', 'tenant' or 'all'"): English answers keep that list
        # (unquoted, as clients have had it); Welsh ones list the quoted values without the "or".
        expected = str(first.get("ctx", {}).get("expected", ""))
        values = re.findall(r"'[^']*'", expected)
        choices = ", ".join(values) if values and current_language() != LANGUAGES[0] else expected.replace("'", "")
        given = repr(first["input"])
        given = given if len(given) <= 40 else given[:37] + "..."  # the sentence is for a person, not an echo
        return _("%(field)s: %(given)s is not one of the choices; choose %(choices)s.", field=where, given=given,
             choices=choices)
    said = _PYDANTIC_IN_WORDS.get(first["type"])
    if said is None or current_language() == LANGUAGES[0]:
        return f"{where}: {first['msg']}"  # pydantic's own English sentence, as clients have had it
    return f"{where}: " + _(said, **{k: v for k, v in first.get("ctx", {}).items() if isinstance(v, (int, str))})


#: pydantic's commonest complaints, said again in the portal's words so that they can be Welsh
#: (pydantic speaks English only); English answers keep pydantic's own sentence.
_PYDANTIC_IN_WORDS = {
    "missing": N_("this field is needed"),
    "extra_forbidden": N_("the API does not know this field"),
    "string_too_long": N_("at most %(max_length)s characters"),
    "string_too_short": N_("at least %(min_length)s characters"),
    "too_long": N_("at most %(max_length)s items"),
    "too_short": N_("at least %(min_length)s items"),
    "greater_than_equal": N_("at least %(ge)s"),
    "less_than_equal": N_("at most %(le)s"),
    "greater_than": N_("more than %(gt)s"),
    "less_than": N_("less than %(lt)s"),
    "int_parsing": N_("a whole number is needed"),
    "int_type": N_("a whole number is needed"),
    "string_type": N_("text is needed"),
    "bool_parsing": N_("true or false is needed"),
    "bool_type": N_("true or false is needed"),
    "date_parsing": N_("a date is needed, written YYYY-MM-DD"),
    "date_from_datetime_parsing": N_("a date is needed, written YYYY-MM-DD"),
    "date_type": N_("a date is needed, written YYYY-MM-DD"),
    "dict_type": N_("an object is needed"),
    "model_type": N_("an object is needed"),
    "list_type": N_("a list is needed"),
    "string_pattern_mismatch": N_("this is not written the way it should be"),
    "value_error": N_("this value cannot be used; check how it is written"),
}


def _check_answer(req: Any, resp: Any, error: Exception | None, instance: Any, adapter: Any) -> None:
    if error is not None:
        log.error("%s %s answered outside its declared model: %s", req.method, req.path, error)
        raise ResponseBreaksContract(f"{req.method} {req.path}: the answer breaks its declared model: {error}")


def _request_checker(json_model: type[BaseModel] | None) -> Callable[..., None]:
    """spectree's ``before`` hook: a failed check becomes InvalidInput, which token_required
    answers as 400 ``invalid`` (after rolling back), like every other refusal."""
    def check(req: Any, resp: Any, error: ValidationError | None, instance: Any, adapter: Any) -> None:
        if json_model is not None and req.method not in ("GET", "DELETE"):
            data = req.get_json(silent=True)
            # An absent body is fine where the model needs nothing (approve); anything else
            # that is not a JSON object (a form, a list, text) is refused as it always was.
            if not isinstance(data, dict) and (req.get_data() or error is not None):
                raise InvalidInput(_("Send a JSON object in the request body."))
        if error is not None:
            raise InvalidInput(validation_sentence(error))
    return check


api_spec = SpecTree(
    backend=_PortalFlaskPlugin,
    mode="strict",  # only the operations declared with operation(), never the pages
    title="Cwmwl Cymru portal API",
    version="1",
    openapi_version="3.1.0",
    description="Personal bearer tokens (make one on the API tokens page), JSON in and out. Every list is a "
                "Page; every error is an ErrorBody with a stable code.",
    annotations=False,
    validation_error_status=400,
    validation_error_model=ErrorBody,
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
    security_schemes=[SecurityScheme(name="bearer", data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer"))],
    security={"bearer": []},
    after=_check_answer,
)

#: Statuses that token_required may answer for any operation (no token; an inactive organisation).
_ALWAYS = (401, 403)


def operation(ok: int, answer: type[BaseModel] | None, summary: Any, *, notes: Any = None,
              query: type[BaseModel] | None = None, json: type[BaseModel] | None = None,
              errors: Iterable[int] = (), body_optional: bool = False, tag: str = "portal") -> Callable[[F], F]:
    """Declare an /api/v1 operation: the status and model of its successful answer (``None``: no
    JSON body, e.g. 204), what it does (``summary``, ``notes``: lazy_gettext strings, English in
    the document and translated on the docs page), its query and body models, and the error
    statuses it may give besides 400, 401 and 403. Goes under ``token_required``, so the token
    is checked before anything else."""
    statuses: dict[str, Any] = {f"HTTP_{ok}": answer}
    for status in {400, *_ALWAYS, *errors}:
        statuses[f"HTTP_{status}"] = ErrorBody
    decorate = api_spec.validate(query=query, json=json, resp=Answers(**statuses), tags=[tag],
                                 before=_request_checker(json))

    def register(view: F) -> F:
        validated = decorate(view)
        validated.api_summary = summary
        validated.api_notes = notes
        validated.api_body_optional = body_optional
        return validated
    return register


def validated_query(model: type[M]) -> M:
    """The query parameters of this request, as checked against ``model``."""
    value = request.context.query  # type: ignore[attr-defined]
    assert isinstance(value, model)
    return value


def validated_body(model: type[M]) -> M:
    """The JSON body of this request, as checked against ``model``."""
    value = request.context.json  # type: ignore[attr-defined]
    assert isinstance(value, model)
    return value


def openapi_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document of every declared operation, in English (built once per app)."""
    cached = app.extensions.get("api_openapi_document")
    if cached is not None:
        return dict(cached)
    # spectree's generator moves nested models out of its registry as it writes them, so a second
    # app (tests make many) would get a document without them: it writes from a copy.
    pristine = copy.deepcopy(api_spec.models)
    with force_locale("en"):
        try:
            document = api_spec._generate_spec()  # noqa: SLF001 - per app: .spec keeps the first app's
        finally:
            api_spec.models = pristine
        for path, methods in document["paths"].items():
            for method, op in methods.items():
                view = operation_view(app, path, method)
                op["summary"] = str(view.api_summary)
                op["description"] = str(view.api_notes or "")
                if view.api_body_optional and "requestBody" in op:
                    op["requestBody"]["required"] = False
                for parameter in op.get("parameters", []):
                    if parameter["name"] == "month" and parameter["in"] == "path":
                        parameter["schema"] = {"type": "string", "pattern": r"^\d{4}-(0[1-9]|1[0-2])$",
                                               "examples": ["2026-11"]}
                        parameter["description"] = "a calendar month, YYYY-MM"
                file_types = getattr(view, "api_file_types", None)
                if file_types:
                    op["responses"][str(200)]["content"] = {
                        mimetype: {"schema": {"type": "string", "format": "binary"}} for mimetype in file_types}
    app.extensions["api_openapi_document"] = document
    return document


def operation_view(app: Flask, path: str, method: str) -> Any:
    """The view function answering ``method`` on the document's ``path``."""
    return app.view_functions[_endpoint(app, path, method)]


def _endpoint(app: Flask, path: str, method: str) -> str:
    for rule in app.url_map.iter_rules():
        if method.upper() in (rule.methods or ()) and _openapi_path(rule.rule) == path:
            return rule.endpoint
    raise LookupError(f"{method} {path} is in the document but not in the URL map")


def _openapi_path(rule: str) -> str:
    """``/servers/<int:server_id>`` → ``/servers/{server_id}``, as spectree writes paths."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def files(*mimetypes: str) -> Callable[[F], F]:
    """Declare that an operation answers 200 with a file of one of ``mimetypes`` (not JSON)."""
    def mark(view: F) -> F:
        view.api_file_types = mimetypes  # type: ignore[attr-defined]
        return view
    return mark


def is_api_request() -> bool:
    """Whether the request is for the JSON API (and so wants JSON errors, not pages)."""
    return request.path.startswith(API_PREFIX) and request.path != API_PREFIX + "docs"


def api_http_error(exc: HTTPException) -> Any:
    """Flask's own refusals under /api/v1 (no such address, wrong method, a crash) as JSON."""
    status = exc.code or 500
    if status == 404:
        return error_response(_("There is nothing at this address of the API; see %(document)s.",
                                document="/api/v1/openapi.json"), 404,
                              ErrorCode.not_found)
    if status == 405:
        allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or []))
        response, _status = error_response(_("This address does not accept %(method)s; it accepts %(allowed)s.",
                                                     method=request.method, allowed=allowed),
                                     405, ErrorCode.method_not_allowed)
        if allowed:
            response.headers["Allow"] = allowed
        return response, 405
    if status >= 500:
        return error_response(_("Something went wrong in the portal; it has been logged. Try again later."), status,
                              ErrorCode.internal)
    return error_response(exc.description or _("The request was not accepted."), status, ErrorCode.invalid)
