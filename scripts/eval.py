"""Evaluate a checkpoint: `python scripts/eval.py experiment=<name> ckpt=<file> [ms_flip=true]` (see isnet/cli/eval.py)."""

from isnet.cli.eval import main

if __name__ == "__main__":
    main()
