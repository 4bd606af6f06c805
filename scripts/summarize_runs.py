"""Mean ± std of the final metrics of several runs and their curves in one PNG; see ``isnet/cli/summarize.py``
(``--help``)."""

from isnet.cli.summarize import main

if __name__ == "__main__":
    main()
