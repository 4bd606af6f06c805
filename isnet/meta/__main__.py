"""``python -m isnet.meta --markdown {readme,docs}``: print the model-zoo table of README.md or docs/model_zoo.md."""

import argparse

from isnet.meta.recipes import markdown_table

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--markdown", choices=("readme", "docs"), default="readme")
print(markdown_table(parser.parse_args().markdown), end="")
