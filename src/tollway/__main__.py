from __future__ import annotations

from tollway.cli import main

main()
