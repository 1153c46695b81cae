"""``python -m freemem.cli.demo``: the demo without the ``freemem`` entry point."""

import argparse
import sys

from freemem.cli.demo import add_arguments, run

parser = argparse.ArgumentParser(prog="freemem demo")
add_arguments(parser)
sys.exit(run(parser.parse_args()))
