from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import Mocks, registry_document
from tests.support.gateway import write_registry
from tests.support.mock_server import running_mock
from tollway.providers.mock import MockSettings


@pytest.fixture(scope="module")
def observed_mocks() -> Iterator[Mocks]:
    """The gateway tests' three upstreams: fast, slow, and always failing (503)."""
    with (
        running_mock(MockSettings()) as fast,
        running_mock(MockSettings(ttft_ms=20, tokens_per_second=400)) as slow,
        running_mock(MockSettings(error_rate=1.0, error_status=503)) as failing,
    ):
        yield Mocks(fast, slow, failing)


@pytest.fixture
def registry_path(observed_mocks: Mocks, tmp_path: Path) -> Path:
    return write_registry(tmp_path / "registry.yaml", registry_document(observed_mocks))


Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Scrape:
    """Every sample of a scrape: (name, labels) → value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(scrape: Scrape, name: str, **labels: str) -> float:
    """The sum of one metric's samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in scrape.items() if n == name and wanted <= ls)
