"""``python -m training.prepare --config training/configs/brain_lite_128.yaml [--cache DIR] [--case ID ...]``

``--bank [--count N]`` builds (or completes) the config's bank of 3D variants instead (training/prepare/variants.py).
"""

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
    parser.add_argument("--bank", action="store_true", help="build the bank of 3D variants of the 'bank' section")
    parser.add_argument("--count", type=int, help="with --bank: number of training variants (default bank.count)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_config(args.config)
    if args.bank:
        from pathlib import Path

        from ..vocabulary import build_structures
        from .converters import expand_datasets
        from .variants import build_bank

        _, entries = expand_datasets(cfg["prepare"])
        out = Path(args.cache or cfg["bank"]["dir"])
        print(build_bank(cfg, build_structures(entries), out, args.count))
        return
    if args.check:
        reports = check_cases(cfg)
        print(json.dumps(reports, indent=1))
        sys.exit(1 if any("error" in r for r in reports) else 0)
    print(prepare(cfg, args.cache, args.case))


if __name__ == "__main__":
    main()
