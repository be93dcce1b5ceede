"""`python -m model_core.data synth|curate|report ...`: the `lpm data` commands on their own."""

import sys

from model_core.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", *sys.argv[1:]]))
