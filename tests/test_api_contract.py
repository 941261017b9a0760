"""The API's contract as the OpenAPI document states it: every route is in it, every answer has
a schema, errors have stable codes, lists share one envelope, and the docs page shows it all."""
from __future__ import annotations

import re
from typing import Any

from cloud_portal.accounts.service import create_api_token
from cloud_portal.extensions import db
from cloud_portal.web.api_spec import ErrorCode

#: Routes under /api/v1 that are not operations of the API: the document itself and its page.
NOT_OPERATIONS = {"/api/v1/openapi.json", "/api/v1/docs"}


def _document_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_api_route_is_in_the_document_with_a_schema_for_each_status(client: Any, app: Any) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearer": []}]
    schemas = doc["components"]["schemas"]
    seen = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule in NOT_OPERATIONS:
            continue
        path = _document_path(rule.rule)
        assert path in doc["paths"], path
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = doc["paths"][path].get(method.lower())
            assert operation is not None, (method, path)
            assert operation["summary"] and not operation["summary"].endswith(">"), (method, path)
            statuses = set(operation["responses"])
            assert {"400", "401", "403"} <= statuses, (method, path)
            assert any(s.startswith("2") for s in statuses), (method, path)
            for status, answer in operation["responses"].items():
                if status == "204":
                    assert "content" not in answer
                    continue
                content = answer.get("content")
                assert content, (method, path, status)
                for media in content.values():
                    ref = media["schema"].get("$ref")
                    assert ref is None or ref.rsplit("/", 1)[-1] in schemas, (method, path, status)
                if status.startswith(("4", "5")):
                    assert content["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
            if "requestBody" in operation:
                assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            seen += 1
    assert seen == sum(len(ops) for ops in doc["paths"].values()) == 24
    assert set(schemas["ErrorCode"]["enum"]) == {code.value for code in ErrorCode}


def test_every_app_gets_the_whole_document(make_app: Any) -> None:
    """spectree moves nested models out of its registry while writing a document: the second app
    of a process got one without ErrorCode, Offer, Step... (found running the fuzzer after this)."""
    documents = [make_app().test_client().get("/api/v1/openapi.json").get_json() for _ in range(2)]
    assert documents[0] == documents[1]
    assert {"ErrorCode", "Offer", "Step", "ResourceHeadroom"} <= set(documents[1]["components"]["schemas"])


def test_every_list_is_a_page(client: Any) -> None:
    """Each operation answering a list uses the one Page envelope."""
    doc = client.get("/api/v1/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    envelope = {"items", "total", "total_is_lower_bound", "next", "prev"}
    lists = []
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            ref = operation["responses"].get("200", {}).get("content", {}).get("application/json", {}).get(
                "schema", {}).get("$ref", "")
            model = schemas.get(ref.rsplit("/", 1)[-1], {})
            if "items" in model.get("properties", {}):
                assert envelope <= set(model["properties"]) and envelope <= set(model["required"]), (method, path)
                lists.append(path)
                parameters = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
                assert {"after", "before", "last"} <= parameters, (method, path)
    assert len(lists) == 5, lists


def test_unknown_addresses_wrong_methods_and_bad_values_answer_json_with_a_code(app: Any, make_user: Any) -> None:
    member = make_user("member", "torfaen")
    token = create_api_token(None, member, "contract")
    db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    missing = client.get("/api/v1/no-such-thing", headers=headers)
    assert missing.status_code == 404 and missing.get_json()["code"] == "not_found"
    wrong = client.delete("/api/v1/requests", headers=headers)
    assert wrong.status_code == 405 and wrong.get_json()["code"] == "method_not_allowed"
    assert wrong.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    scope = client.get("/api/v1/servers?scope=everyone", headers=headers)
    assert scope.status_code == 400 and scope.get_json() == {
        "code": "invalid", "error": "scope: 'everyone' is not one of the choices; choose mine, tenant or all."}
    too_long = client.post("/api/v1/requests", headers=headers, json={
        "kind": "vm", "size": "small", "data_hall": "local-government", "name": "x" * 201})
    assert too_long.status_code == 400
    assert too_long.get_json()["error"] == "name: String should have at most 200 characters"
    listed = client.get("/api/v1/billing/months", headers=headers).get_json()
    assert len(listed["items"]) == listed["total"] == 12 and listed["next"] is None
    # The pages keep their own error pages.
    assert b"<html" in client.get("/no-such-page").data


def test_a_crash_in_the_api_is_a_json_500_with_code_internal(make_app: Any) -> None:
    from werkzeug.exceptions import InternalServerError

    from cloud_portal.web.api_spec import api_http_error
    app = make_app()
    with app.test_request_context("/api/v1/me"):
        response, status = api_http_error(InternalServerError())
    assert status == 500 and response.get_json()["code"] == "internal"


def test_answers_are_checked_against_their_model_under_tests_and_when_asked() -> None:
    """An answer outside its model is a fault (an exception under tests, a 500 in production with
    API_VALIDATE_RESPONSES on); with it off, production answers what the view returned."""
    import pytest
    from flask import Flask, jsonify
    from pydantic import BaseModel

    from cloud_portal.web import api_spec

    class Answer(BaseModel):
        n: int

    def bad() -> Any:
        return jsonify({"n": "not a number"})

    for testing, validate in ((True, False), (False, True), (False, False)):
        app = Flask("contract")
        app.testing = testing
        app.config["API_VALIDATE_RESPONSES"] = validate
        view = api_spec.operation(200, Answer, "bad answer")(bad)
        with app.test_request_context("/api/v1/x"):
            if testing or validate:
                with pytest.raises(api_spec.ResponseBreaksContract):
                    view()
            else:
                assert view().get_json() == {"n": "not a number"}


def test_the_docs_page_shows_operations_models_and_codes_in_both_languages(client: Any) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "<code>POST /api/v1/requests</code>" in html and 'id="model-NewRequest"' in html
    assert "<code>quota_exceeded</code>" in html and "<caption>" in html and 'scope="col"' in html
    assert "cdn" not in html.lower() and "<script" not in html
    client.post("/language", data={"lang": "cy"})
    welsh = client.get("/api/v1/docs").get_data(as_text=True)
    assert 'lang="cy"' in welsh and "<code>POST /api/v1/requests</code>" in welsh
    assert "API documentation" not in welsh


def test_a_month_after_2107_exports_as_a_spreadsheet(app: Any, make_user: Any) -> None:
    """Found by the fuzzer: a zip entry's date (MS-DOS) ends with 2107, and the xlsx export dated
    its entries in the month exported, so /billing/months/7142-03/export?format=xlsx was a 500."""
    import io
    import zipfile
    finance = make_user("finance", "platform")
    token = create_api_token(None, finance, "far future")
    db.session.commit()
    answer = app.test_client().get("/api/v1/billing/months/7142-03/export?format=xlsx",
                                   headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    dated = {info.date_time[:3] for info in zipfile.ZipFile(io.BytesIO(answer.data)).infolist()}
    assert dated == {(2107, 12, 31)}
