"""The OpenAPI document follows the signatures: real requests validate, broken ones do not."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

import tiffin
from tiffin.serve.openapi import openapi_document
from tiffin.serve.protocols import PROTOCOLS
from tiffin.serve.protocols.v2 import request_schema


@pytest.fixture(scope="module")
def models(packages: dict[str, Path]) -> list[tiffin.Predictor]:
    return [tiffin.load(packages[k]) for k in ("iris", "iris2", "multi")]


def test_paths_for_every_model_version(models: list[tiffin.Predictor]) -> None:
    doc = openapi_document(models, PROTOCOLS)
    assert doc["openapi"] == "3.1.0"
    for path in ("/v2/models/iris/infer", "/v2/models/iris/versions/1/infer",
                 "/v2/models/iris/versions/2/ready", "/v2/models/multi", "/v2/health/ready"):  # fmt: skip
        assert path in doc["paths"], path
    assert "/invocations" not in doc["paths"]  # two names are served
    assert "security" not in doc
    infer = doc["paths"]["/v2/models/multi/infer"]["post"]
    assert {"400", "404", "413", "415", "503", "504"} <= set(infer["responses"])
    single = openapi_document(models[:1], PROTOCOLS, auth=True)
    assert "/invocations" in single["paths"] and single["security"] == [{"bearer": []}]
    assert single["paths"]["/v2/health/live"]["get"]["security"] == []  # probes stay open
    assert "security" not in single["paths"]["/metrics"]["get"]  # its labels name the models
    public = openapi_document(models[:1], PROTOCOLS, auth=True, metrics_public=True)
    assert public["paths"]["/metrics"]["get"]["security"] == []


def test_request_schema_accepts_what_the_server_accepts(models: list[tiffin.Predictor]) -> None:
    schema = request_schema(models[2])
    jsonschema.Draft202012Validator.check_schema(schema)
    good = {
        "inputs": [
            {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [[1, 2, 3]]},
            {"name": "n", "shape": [1], "datatype": "INT64", "data": [1]},
            {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["a"]},
        ],
        "outputs": [{"name": "sum", "parameters": {"binary_data": True}}],
    }
    jsonschema.validate(good, schema)
    for broken in (
        {"inputs": good["inputs"][:2]},  # an input missing
        {"inputs": [{**good["inputs"][0], "datatype": "FP64"}, *good["inputs"][1:]]},
        {"inputs": [{**good["inputs"][0], "shape": [3]}, *good["inputs"][1:]]},
        {"inputs": [*good["inputs"][:2], {**good["inputs"][2], "data": [1]}]},
        {**good, "outputs": [{"name": "nope"}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_the_document_is_valid_openapi_3_1(models: list[tiffin.Predictor]) -> None:
    """Checked by openapi-spec-validator, not by eye: a description on a Media Type Object
    (which OpenAPI 3.1 does not allow) once made every served document invalid."""
    from openapi_spec_validator import validate

    for doc in (
        openapi_document(models, PROTOCOLS),
        openapi_document(models[:1], PROTOCOLS, auth=True),
    ):
        validate(doc)  # type: ignore[arg-type]


def test_unversioned_paths_describe_the_version_that_answers(
    models: list[tiffin.Predictor],
) -> None:
    iris1, iris2 = models[0], models[1]  # iris 2 answers /v2/models/iris (predict_proba)
    for order in ([iris1, iris2], [iris2, iris1]):
        doc = openapi_document(order, PROTOCOLS)
        infer = doc["paths"]["/v2/models/iris/infer"]["post"]
        assert infer["summary"].startswith("run iris 2 ")
        assert doc["paths"]["/v2/models/iris/versions/1/infer"]["post"]["summary"].startswith(
            "run iris 1 "
        )
