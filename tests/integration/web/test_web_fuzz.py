"""The REST API fuzzed against its own OpenAPI schema (schemathesis), on a running daemon.

Every operation of `/api/openapi.json` gets up to `FUZZ_EXAMPLES` generated requests
(valid and invalid path parameters, queries, missing credentials), sent with the instance
token to the shared sample instance. Each answer must be no 5xx and must conform to the
schema: a documented status code, content type and body.

Left out, so the shared instance stays up for the other tests: `POST /api/shutdown`, and
stop/restart of a real service (those two are fuzzed with names of services that do not
exist). The event streams (`/api/events`, `.../logs/stream`) never end, so they are left
to the security tests.

Bounded: `FUZZ_EXAMPLES` (25) per operation, no shrinking deadline, about 30 s in all.
Replay: every run prints its seed (`fuzz seed: N`); run again with
`COURSESTACK_FUZZ_SEED=N pytest tests/integration/web/test_web_fuzz.py` (pytest's own
`--hypothesis-seed=N` works too when the variable is unset).
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, seed, settings
from schemathesis import Case
from schemathesis.schemas import BaseSchema

pytestmark = pytest.mark.slow

FUZZ_EXAMPLES = int(os.environ.get("COURSESTACK_FUZZ_EXAMPLES", "25"))
FUZZ_SEED = int(os.environ.get("COURSESTACK_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
#: Operations that would stop a service of the shared instance if given a real name.
STOPPING = ("/stop", "/restart")


@pytest.fixture(scope="module")
def real_services(daemon: Any) -> frozenset[str]:
    with daemon.bearer() as client:
        return frozenset(service["name"] for service in client.get("/api/services").json())


@pytest.fixture(scope="module")
def api_schema(daemon: Any, real_services: frozenset[str]) -> BaseSchema:
    auth = {"Authorization": f"Bearer {daemon.token}"}
    schema = schemathesis.openapi.from_url(
        f"{daemon.url}api/openapi.json", headers=auth, timeout=30
    )
    schema.config.update(headers=auth, request_timeout=30)

    @schema.hook
    def filter_path_parameters(context: Any, path_parameters: dict[str, Any]) -> bool:
        """Never stop or restart a real service of the shared instance."""
        path = str(getattr(getattr(context, "operation", None), "path", ""))
        return not (path.endswith(STOPPING) and path_parameters.get("name") in real_services)

    print(f"fuzz seed: {FUZZ_SEED} (replay: COURSESTACK_FUZZ_SEED={FUZZ_SEED})")
    return schema


# Filters go on the lazy schema: it replaces the fixture's own filters with these.
lazy_schema = (
    schemathesis.pytest.from_fixture("api_schema")
    .exclude(path="/api/shutdown")
    .exclude(path_regex=r"/(events|logs/stream)$")
)


@lazy_schema.parametrize()
@seed(FUZZ_SEED)
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    print_blob=True,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(case: Case, real_services: frozenset[str]) -> None:
    if case.path.endswith(STOPPING):
        assert case.path_parameters.get("name") not in real_services, (
            "the fuzzer must not stop a service of the shared instance"
        )
    try:
        response = case.call()
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} answered {response.status_code}: "
            f"{response.text[:500]}"
        )
        case.validate_response(response)
    except Exception as error:
        error.add_note(f"fuzz seed {FUZZ_SEED}: replay with COURSESTACK_FUZZ_SEED={FUZZ_SEED}")
        raise
