"""Fixtures for the LangGraph surface tests (the kit itself lives in ``lgfakes.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # `import lgfakes` from the test modules, whatever pytest's import mode
    sys.path.insert(0, _HERE)
