"""Predict masks and overlays: `python scripts/predict.py ckpt=<file> input=<image|folder|glob>` (see isnet/cli/predict.py)."""

from isnet.cli.predict import main

if __name__ == "__main__":
    main()
