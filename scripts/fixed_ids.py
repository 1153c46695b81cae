"""Run the freemem CLI with every ``uuid4`` the same, so two versions of the code can be compared figure for figure.

Event ids and fold handles are random, and a marker or a fold message names them: their hex digits change a
context's token count by one now and then, and with it when the next clean or fold happens. Two runs of the same
code then differ a little; with the ids fixed they are identical, and a difference between two versions is theirs.

    PYTHONPATH=$PWD:$PWD/bench .venv/bin/python scripts/fixed_ids.py bench long --data ../shared/data --json a.json
"""

import sys
import uuid

uuid.uuid4 = lambda: uuid.UUID(int=0x5EED5EED5EED5EED5EED5EED5EED5EED)  # before freemem is imported

from freemem.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
