"""Benchmark ISNet on this machine; see ``isnet/cli/benchmark.py`` (``--help``)."""

from isnet.cli.benchmark import main

if __name__ == "__main__":
    main()
