"""Schemathesis against the server's own OpenAPI document: requests generated for every
operation (valid and invalid, every phase: examples, coverage, fuzzing, stateful) against
a real `tiffin serve`; no answer may be a 5xx, and every answer must match the document.

Run through schemathesis's command line: its pytest plugin does not work with this
pytest. One check is left out, on purpose: ``positive_data_acceptance`` expects every
schema-valid request to succeed, and an OpenAPI schema cannot say everything a signature
does (a binary body must begin with a JSON header whose tensors match it; a
``dataframe_records`` row must carry every column), so such requests get a correct 400.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.conftest import Served, start, stop

pytestmark = pytest.mark.slow

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
])  # fmt: skip


@pytest.fixture(scope="module")
def fuzzed_server(packages: dict[str, Path]) -> Iterator[Served]:
    served = start([str(packages["iris"]), str(packages["multi"]), str(packages["table"])])
    yield served
    stop(served)


def _schemathesis() -> list[str]:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "schemathesis.cli"]


@pytest.mark.parametrize("extra", [[], ["--header", "Authorization: Bearer s3cret"]])
def test_generated_requests_never_break_the_server(
    fuzzed_server: Served, packages: dict[str, Path], extra: list[str], tmp_path: Path
) -> None:
    served = fuzzed_server
    if extra:  # the same with auth on: the token must be honoured and required
        served = start([str(packages["multi"]), "--token", "s3cret"])
    try:
        proc = subprocess.run(
            [*_schemathesis(), "run", f"{served.url}/v2/openapi.json", "--checks", CHECKS,
             "--max-examples", "30", "--seed", "20261201", "--no-color", *extra],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,  # its cache goes there
        )  # fmt: skip
    finally:
        if extra:
            stop(served)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "generated" in proc.stdout
