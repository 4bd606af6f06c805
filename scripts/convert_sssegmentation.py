"""Convert a released sssegmentation ISNet checkpoint: `python scripts/convert_sssegmentation.py SRC [DST] [--hub-dir OUT] [--force]`."""

import sys

from isnet.cli.convert import main

if __name__ == "__main__":
    sys.exit(main())
