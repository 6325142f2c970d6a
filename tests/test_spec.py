"""The spec is tested, not trusted: it validates, loads in both tools, agrees with the contract."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec

from tests.spec_tools import operations, resolve_refs

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "openapi" / "vpp-participations.yaml"
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    with SPEC_PATH.open() as f:
        loaded: dict[str, Any] = yaml.safe_load(f)
    return loaded






def _examples(spec: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """(where, schema, example) for every example the spec gives, wherever it stands."""

    def walk_schema(where: str, schema: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
        if "example" in schema:
            yield where, schema, schema["example"]
        for name, prop in schema.get("properties", {}).items():
            yield from walk_schema(f"{where}.{name}", prop)
        if isinstance(schema.get("items"), dict):
            yield from walk_schema(f"{where}[]", schema["items"])
        for i, sub in enumerate(schema.get("allOf", [])):
            yield from walk_schema(f"{where}.allOf[{i}]", sub)

    for name, schema in spec["components"]["schemas"].items():
        yield from walk_schema(f"schemas.{name}", resolve_refs(spec, schema))

    def walk_content(where: str, content: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
        for media, body in content.items():
            schema = resolve_refs(spec, body["schema"])
            if "example" in body:
                yield f"{where} {media}", schema, resolve_refs(spec, body["example"])
            for ex_name, ex in body.get("examples", {}).items():
                yield f"{where} {media} examples.{ex_name}", schema, resolve_refs(spec, ex)["value"]

    for path, method, op in operations(spec):
        where = f"{method.upper()} {path}"
        if "requestBody" in op:
            yield from walk_content(f"{where} request", op["requestBody"]["content"])
        for status, response in op["responses"].items():
            response = resolve_refs(spec, response)
            yield from walk_content(f"{where} {status}", response.get("content", {}))
            for header, h in response.get("headers", {}).items():
                yield from walk_schema(f"{where} {status} header {header}", h["schema"])


def test_spec_is_valid_openapi_3_0_3(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.0.3"
    validate_spec(spec)


def test_spec_loads_in_connexion() -> None:
    from connexion.spec import Specification

    loaded = Specification.load(SPEC_PATH)
    assert {op_id for op_id in _operation_ids(loaded.raw)} == {
        "createBearerToken",
        "createVppParticipation",
        "listVppParticipations",
        "retrieveVppParticipation",
        "updateVppParticipation",
    }


def _operation_ids(spec: dict[str, Any]) -> list[str]:
    return [op["operationId"] for _, _, op in operations(spec)]


def test_spec_loads_in_schemathesis() -> None:
    import schemathesis
    from schemathesis.core.result import Ok

    schema = schemathesis.openapi.from_path(str(SPEC_PATH))
    results = list(schema.get_all_operations())
    assert len(results) == 5
    for result in results:  # an Err where Schemathesis could not build the operation
        assert isinstance(result, Ok), result.err()


def test_every_example_validates_against_its_schema(spec: dict[str, Any]) -> None:
    found = list(_examples(spec))
    assert len(found) > 40, "the spec should carry examples throughout"
    failures = []
    for where, schema, example in found:
        # The components stay reachable: a discriminator's mapping names them.
        root = {**schema, "components": spec["components"]} if isinstance(schema, dict) else schema
        errors = list(OAS30Validator(root).iter_errors(example))
        failures += [f"{where}: {e.message}" for e in errors]
    assert not failures, "\n".join(failures)


def test_every_operation_has_id_4xx_response_and_example(spec: dict[str, Any]) -> None:
    problems = []
    for path, method, op in operations(spec):
        where = f"{method.upper()} {path}"
        if not op.get("operationId"):
            problems.append(f"{where} has no operationId")
        if not any(str(s).startswith("4") for s in op["responses"]):
            problems.append(f"{where} documents no 4xx response")
        success = [r for s, r in op["responses"].items() if str(s).startswith("2")]
        for response in success:
            content = resolve_refs(spec, response).get("content", {})
            for media in content.values():
                if "example" not in media and "examples" not in media:
                    problems.append(f"{where} success response has no example")
        if "requestBody" in op:
            for media in op["requestBody"]["content"].values():
                if "example" not in media and "examples" not in media:
                    problems.append(f"{where} request body has no example")
        if not op.get("description"):
            problems.append(f"{where} has no description")
    assert not problems, "\n".join(problems)


def test_every_error_response_is_the_error_object(spec: dict[str, Any]) -> None:
    """Each error response is the Error object with the type and the codes of its status, and
    the codes are the ones Error.code's description gives that status."""
    error = spec["components"]["schemas"]["Error"]
    described = error["properties"]["code"]["description"]
    for path, method, op in operations(spec):
        for status, response in op["responses"].items():
            if int(status) < 400:
                continue
            content = resolve_refs(spec, response)["content"]
            assert list(content) == ["application/json"], (method, path, status)
            schema = resolve_refs(spec, content["application/json"]["schema"])
            base, narrowed = schema["allOf"]
            assert base == resolve_refs(spec, error)
            assert set(narrowed) == {"properties"} and set(narrowed["properties"]) == {
                "type", "code"}
            kind = "rate_limit" if int(status) == 429 else (
                "api_error" if int(status) >= 500 else "invalid_request")
            assert narrowed["properties"]["type"]["enum"] == [kind], (path, status)
            for code in narrowed["properties"]["code"]["enum"]:
                said = re.search(rf"`{code}`[^(]*\(([0-9]{{3}})\)", described)
                assert said is not None and said.group(1) == str(status), (path, status, code)


def test_every_link_names_an_existing_operation_and_parameter(spec: dict[str, Any]) -> None:
    params_by_op: dict[str, set[str]] = {}
    for path, _method, op in operations(spec):
        shared = spec["paths"][path].get("parameters", [])
        params = [resolve_refs(spec, p) for p in [*shared, *op.get("parameters", [])]]
        params_by_op[op["operationId"]] = {p["name"] for p in params}
    links = 0
    for path, method, op in operations(spec):
        for status, response in op["responses"].items():
            for name, link in resolve_refs(spec, response).get("links", {}).items():
                links += 1
                where = f"{method.upper()} {path} {status} link {name}"
                assert link["operationId"] in params_by_op, f"{where}: unknown operation"
                for param, expr in link["parameters"].items():
                    assert param in params_by_op[link["operationId"]], f"{where}: no {param}"
                    assert re.fullmatch(r"\$response\.body#(/[\w]+)+", expr), f"{where}: {expr}"
    assert links >= 8


def _seed_states() -> list[str]:
    seeds = sorted((SHARED / "seed").glob("*.txt"))
    if not seeds:
        pytest.skip(f"the seed page is not at {SHARED / 'seed'}")
    text = seeds[0].read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("ENROLMENT_REQUESTED,"))
    listed = line.split(" Set to true")[0]
    return [s.strip() for s in listed.split(",")]


def test_state_enum_is_the_seed_list(spec: dict[str, Any]) -> None:
    enum = spec["components"]["schemas"]["ParticipationStateName"]["enum"]
    assert enum == _seed_states()
    assert len(enum) == 15


def _markdown_table(text: str, header: str) -> dict[str, set[str]]:
    """`| from | to |` rows after the header line, as {from: {to, ...}}."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == header)
    table: dict[str, set[str]] = {}
    for line in lines[start + 2 :]:
        if not line.strip().startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        targets = set(re.findall(r"\b[A-Z][A-Z_]{3,}\b", cells[1]))
        for source in re.findall(r"\b[A-Z][A-Z_]{3,}\b", cells[0]):
            table[source] = targets
    return table


def _contract_table() -> dict[str, set[str]]:
    contract = SHARED / "design" / "vpp-contract.md"
    if not contract.exists():
        pytest.skip(f"the contract is not at {contract}")
    table = _markdown_table(contract.read_text(), "| from | to |")
    # The contract words two edges in prose: the cancelled leave request and terminal states.
    table["UNENROLMENT_REQUESTED"] = {"WINDING_DOWN", "FAILED", "PREVIOUS_STATE"}
    return table


def test_spec_transition_table_matches_the_contract(spec: dict[str, Any]) -> None:
    description = spec["paths"]["/vpp-participations/{participation_id}"]["post"]["description"]
    in_spec = _markdown_table(description, "| from | to |")
    contract = _contract_table()
    for terminal in ("INELIGIBLE", "OFFBOARDED", "FAILED"):
        contract.setdefault(terminal, set())
    assert in_spec == contract
    states = set(spec["components"]["schemas"]["ParticipationStateName"]["enum"])
    assert set(in_spec) == states


def test_mock_lifecycle_table_matches_the_spec(spec: dict[str, Any]) -> None:
    from vpp_sandbox.mock_server.lifecycle import TRANSITIONS

    description = spec["paths"]["/vpp-participations/{participation_id}"]["post"]["description"]
    in_spec = _markdown_table(description, "| from | to |")
    as_code = {s.value: {t.value for t in targets} for s, targets in TRANSITIONS.items()}
    as_code["UNENROLMENT_REQUESTED"].add("PREVIOUS_STATE")
    assert as_code == in_spec
