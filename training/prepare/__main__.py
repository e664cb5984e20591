"""``python -m training.prepare --config training/configs/brain_lite_128.yaml [--cache DIR] [--case ID ...]``"""

import argparse
import json
import logging
import sys

from ..config import load_config
from .run import check_cases, prepare


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Check cases and build the slice cache of a training config.")
    parser.add_argument("--config", required=True, help="YAML config with a 'prepare' section")
    parser.add_argument("--cache", help="output folder (default: prepare.cache of the config)")
    parser.add_argument("--case", action="append", help="prepare only these case ids")
    parser.add_argument("--check", action="store_true", help="only open and check every case; write nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_config(args.config)
    if args.check:
        reports = check_cases(cfg)
        print(json.dumps(reports, indent=1))
        sys.exit(1 if any("error" in r for r in reports) else 0)
    print(prepare(cfg, args.cache, args.case))


if __name__ == "__main__":
    main()
