"""Export ISNet to ONNX / TorchScript / torch.export; see ``isnet/cli/export.py`` (``--help``)."""

from isnet.cli.export import main

if __name__ == "__main__":
    main()
