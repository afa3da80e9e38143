"""Hypothesis against every operation of the OpenAPI document: generated input never gets a 500.

Inputs mix schema-valid values (so handlers run deep: real classifications, holds, downloads) with
garbage (wrong types, unknown fields, NUL, lone surrogates, huge numbers, broken JSON, odd ids), and
tokens of every role or none.  Runs on SQLite and PostgreSQL (NUL and surrogates matter there).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from apihelp import ROLES, T0, Fakes, auth, seed, services_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from gateway.api import create_app
from gateway.api.openapi import openapi_document
from gateway.store import ActivationWriter, Records

DOC = openapi_document()
OPERATIONS = [(path, method) for path, ops in DOC["paths"].items() for method in ops]
EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "40"))  # raise it for a deeper local run

nasty_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "../../etc/passwd", "%", "x" * 300, "' OR 1=1 --",
                     "2026-11-01T12:00:00Z", "-1", "1e309", "null", "🚨"]),
)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                         st.floats(allow_nan=True, allow_infinity=True), nasty_text)
any_json = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)), max_leaves=12)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Mostly-valid values of ``schema`` (the subset the API uses)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of(st.none(), from_schema({**schema, "type": next(k for k in kind if k != "null")}))
    if kind == "object":
        props = schema.get("properties", {})
        required = {k: from_schema(v) for k, v in props.items() if k in schema.get("required", ())}
        optional = {k: from_schema(v) for k, v in props.items() if k not in schema.get("required", ())}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and not props:
            return st.dictionaries(st.sampled_from(["council", "police", "cctv-1"]), from_schema(extra), max_size=3)
        return st.fixed_dictionaries(required, optional=optional)
    if kind == "integer":
        low, high = schema.get("minimum", -5), schema.get("maximum", 5)
        return st.integers(min_value=low - 1, max_value=high + 1)
    if kind == "boolean":
        return st.booleans()
    if schema.get("format") == "date-time":
        return st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())
    if kind == "string":
        return st.one_of(st.sampled_from(["hp-outram", "act-00000", "live-1", "council"]),
                         st.text(min_size=schema.get("minLength", 0), max_size=20))
    return any_json


def as_query(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


@st.composite
def requests(draw: st.DrawFn, path: str, method: str) -> dict[str, Any]:
    op = DOC["paths"][path][method]
    url = path
    for param in op.get("parameters", []):
        if param["in"] == "path":
            value = draw(st.one_of(st.sampled_from(["act-00000", "act-00001", "live-1", "rec"]), nasty_text))
            url = url.replace("{" + param["name"] + "}", quote(value, safe="", errors="surrogatepass") or "x")
    query: dict[str, str] = {}
    for param in op.get("parameters", []):
        if param["in"] == "query" and draw(st.booleans()):
            value = draw(st.one_of(from_schema(param["schema"]), json_scalars))
            query[param["name"]] = quote(as_query(value), safe="", errors="surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        query[draw(st.sampled_from(["x", "limit[]", "%00", ""]))] = "1"
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    body_kind = draw(st.sampled_from(["schema", "schema", "json", "bytes", "none"]))
    if body_kind == "schema" and schema is not None:
        body = json.dumps(draw(from_schema(schema)), ensure_ascii=False).encode("utf-8", "surrogatepass")
    elif body_kind == "json":
        body = json.dumps(draw(any_json), ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    elif body_kind == "bytes":
        body = draw(st.binary(max_size=64))
    else:
        body = b""
    who = draw(st.sampled_from([*ROLES, "admin", "admin", None, "garbage"]))
    return {"method": method.upper(), "url": url, "query": query, "body": body, "who": who}


@pytest.fixture
async def fuzz_client(records: Records, tokens: dict[str, str], tmp_path: Path) -> Any:
    """The app with activations, one of them with a real recording file, and tokens of every role."""
    await seed(records, 3)
    data = b"RIFF" + bytes(range(256)) * 40
    path = tmp_path / "act-00000.wav"
    path.write_bytes(data)
    writer = ActivationWriter(records, clock=lambda: T0)
    await writer.start()
    writer.recording("act-00000", str(path), 5.0, hashlib.sha256(data).hexdigest(), len(data))
    await writer.close()
    async with TestClient(TestServer(create_app(services_for(records, Fakes())))) as client:
        yield client, tokens


@pytest.mark.parametrize("path, method", OPERATIONS, ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          database=None)
@given(data=st.data())
async def test_no_input_gets_a_500(fuzz_client: Any, path: str, method: str, data: st.DataObject) -> None:
    client, tokens = fuzz_client
    request = data.draw(requests(path, method))
    headers = {"Content-Type": "application/json"}
    if request["who"] == "garbage":
        headers["Authorization"] = "Bearer \xe9t\xe9 nonsense/=="
    elif request["who"] is not None:
        headers.update(auth(tokens[request["who"]]))
    query = "&".join(f"{k}={v}" for k, v in request["query"].items())
    url = client.make_url(request["url"] + ("?" + query if query else ""))
    async with client.session.request(request["method"], url, data=request["body"], headers=headers) as response:
        body = await response.read()
        assert response.status < 500, (request, response.status, body[:500])
        if response.status >= 400:
            doc = json.loads(body)
            assert set(doc) == {"error", "detail"}, doc


@pytest.mark.parametrize("raw, statuses", [
    ("/api/activations?limit=%zz", {400}),
    ("/api/activations?%ff=1", {400}),
    ("/api/activations/%ff%fe", {400, 404}),
    ("/api/activations/%00", {400}),
    ("/api/activations?from=%00", {400}),
    ("/api/activations?limit=1&limit=2", {400}),
    ("/api/activations/act-00000/recording?recording_id=99999999999", {400}),
    ("/api/audit?cursor=%5B%22x%22%5D", {400}),
    ("/api/audit?cursor=WzFd", {200}),
    ("/api/audit?cursor=Wzk5OTk5OTk5OTk5OTk5OTk5OTk5XQ", {400}),
    ("/api/activations?cursor=WyIyMDI2LTExLTAxVDEyOjAwOjAwIiwxXQ", {400}),
    ("/api/activations?cursor=WyIyMDI2LTExLTAxVDEyOjAwOjAwKzAwOjAwIiwiYVx1MDAwMGIiXQ", {400}),
])
async def test_raw_urls(fuzz_client: Any, raw: str, statuses: set[int]) -> None:
    client, tokens = fuzz_client
    url = URL(str(client.make_url("/")).rstrip("/") + raw, encoded=True)
    async with client.session.get(url, headers=auth(tokens["admin"])) as response:
        assert response.status in statuses, (raw, response.status, await response.text())
