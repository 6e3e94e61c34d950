"""The intake API fuzzed from its own OpenAPI description: no input yields a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import not_a_server_error

from tests.support.office import Office, make_office


@pytest.fixture(scope="module")
def fuzz_office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    o = make_office(tmp_path_factory.mktemp("fuzz"), intake={"body_idle_timeout_s": 2.0})
    o.start_intake()
    yield o
    o.stop()


def test_no_server_errors(fuzz_office: Office) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_office.url}/openapi.json")
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {op.label for op in operations} == {
        "PUT /v1/recordings/{recording_id}", "GET /v1/recordings/{recording_id}",
        "GET /v1/status"}
    strategy = st.one_of([op.as_strategy() for op in operations])
    seen: set[int] = set()

    @given(case=strategy, with_token=st.booleans())
    @settings(max_examples=250, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Case, with_token: bool) -> None:
        headers = dict(case.headers or {})
        if with_token:
            headers["Authorization"] = f"Bearer {fuzz_office.token}"
        response = case.call(headers=headers, timeout=10)
        seen.add(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])

    run()
    assert 201 in seen and 401 in seen  # the fuzzer reached the real paths, not only refusals
