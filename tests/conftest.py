"""Suite-wide settings. Server fixtures live next to the tests that need them (tests/*/conftest.py) and
in tests/support/."""

import os

from hypothesis import settings

# CI machines are small and shared: no per-example deadline, a fixed, reproducible profile.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
