"""Parameters and FLOPs of ISNet per module group; see ``isnet/cli/model_info.py`` (``--help``)."""

from isnet.cli.model_info import main

if __name__ == "__main__":
    main()
