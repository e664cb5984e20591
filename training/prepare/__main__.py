"""``python -m training.prepare --config training/configs/brain_lite_128.yaml [--cache DIR] [--case ID ...]``"""

import argparse
import logging

from ..config import load_config
from .run import prepare


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Check cases and build the slice cache of a training config.")
    parser.add_argument("--config", required=True, help="YAML config with a 'prepare' section")
    parser.add_argument("--cache", help="output folder (default: prepare.cache of the config)")
    parser.add_argument("--case", action="append", help="prepare only these case ids")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    print(prepare(load_config(args.config), args.cache, args.case))


if __name__ == "__main__":
    main()
