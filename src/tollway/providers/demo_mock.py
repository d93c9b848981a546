"""`python -m tollway.providers.demo_mock PORT`: the demo's mock provider, as `tollway demo`
starts it. It runs beside the demo's first steps (creating the database, the key), and
imports only the mock, not the command line: on a first run, with no bytecode compiled yet,
the command line's imports take seconds and the mock's a fraction of one."""

from __future__ import annotations

import os
import sys

from tollway.providers.mock import run_mock_provider
from tollway.providers.mock_settings import DEMO_PACES, MockSettings


def main(argv: list[str]) -> None:
    settings = MockSettings(api_key=os.environ.get("TOLLWAY_MOCK_API_KEY"), paces=DEMO_PACES)
    run_mock_provider(settings, "127.0.0.1", int(argv[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
