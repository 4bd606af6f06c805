"""Train ISNet: `python scripts/train.py experiment=<name> [overrides]` (see isnet/cli/train.py)."""

from isnet.cli.train import main

if __name__ == "__main__":
    main()
