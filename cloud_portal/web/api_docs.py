"""The API documentation page: the OpenAPI document (api_spec) turned into tables for people.

The page is made from the same document clients read, so it shows exactly what the views check;
the operations' summaries and the error codes' meanings come translated (they are lazy_gettext
strings), the field names and types are the API's own words.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from cloud_portal.web.api_spec import ERROR_CODE_MEANINGS, openapi_document, operation_view


@dataclass
class FieldRow:
    """One field of a model, parameter or body: its name, type in words, and whether it must be sent."""

    name: str
    type: str
    required: bool
    #: The model named by the type, if any (for a link to its table).
    model: str | None = None


@dataclass
class Answer:
    status: str
    model: str | None
    is_error: bool
    content_types: list[str] = field(default_factory=list)


@dataclass
class Operation:
    method: str
    path: str
    anchor: str
    tag: str
    summary: str
    notes: str
    parameters: list[tuple[str, FieldRow]]
    body_model: str | None
    body_required: bool
    answers: list[Answer]


def _model_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_in_words(schema: dict[str, Any]) -> tuple[str, str | None]:
    """A JSON schema as short text (``"list of ServerOut"``, ``"string or null"``, ``"mine | all"``)
    and the model it names, if one."""
    if "$ref" in schema:
        name = _model_name(schema["$ref"])
        return name, name
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"]), None
    if "const" in schema:
        return str(schema["const"]), None
    if "anyOf" in schema:
        parts = [type_in_words(s) for s in schema["anyOf"]]
        model = next((m for _, m in parts if m), None)
        return " or ".join(text for text, _ in parts), model
    kind = schema.get("type", "any")
    if kind == "array":
        text, model = type_in_words(schema.get("items", {}))
        return f"list of {text}", model
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        text, model = type_in_words(schema["additionalProperties"])
        return f"map of {text}", model
    detail = schema.get("format") or schema.get("pattern")
    return (f"{kind} ({detail})" if detail else str(kind)), None


def model_fields(schema: dict[str, Any]) -> list[FieldRow]:
    """The fields of an object schema, in declaration order."""
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        text, model = type_in_words(prop)
        rows.append(FieldRow(name, text, name in required, model))
    return rows


def docs_context(app: Flask) -> dict[str, Any]:
    """What templates/api/docs.html shows: operations grouped by tag, models, error codes."""
    document = openapi_document(app)
    operations: list[Operation] = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            view = operation_view(app, path, method)
            parameters = []
            for p in op.get("parameters", []):
                text, model = type_in_words(p.get("schema", {}))
                parameters.append((p["in"], FieldRow(p["name"], text, bool(p.get("required")), model)))
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            answers = []
            for status, answer in sorted(op["responses"].items()):
                content = answer.get("content", {})
                ref = content.get("application/json", {}).get("schema", {}).get("$ref")
                answers.append(Answer(status, _model_name(ref) if ref else None, int(status) >= 400,
                                      [t for t in content if t != "application/json"]))
            operations.append(Operation(
                method=method.upper(), path=path, anchor=op["operationId"], tag=(op.get("tags") or ["portal"])[0],
                summary=str(view.api_summary), notes=str(view.api_notes or ""), parameters=parameters,
                body_model=_model_name(body["$ref"]) if body else None,
                body_required=bool(op.get("requestBody", {}).get("required")), answers=answers))
    schemas = document["components"]["schemas"]
    models = {name: model_fields(schema) for name, schema in sorted(schemas.items()) if schema.get("properties")}
    enums = {name: " | ".join(str(v) for v in schema["enum"]) for name, schema in sorted(schemas.items())
             if "enum" in schema}
    return {"operations": operations, "models": models, "enums": enums,
            "error_codes": [(code.value, status, meaning) for code, (status, meaning) in ERROR_CODE_MEANINGS.items()]}
