"""`python -m model_core.cli ...`: the model commands without the services package."""

import sys

from model_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
