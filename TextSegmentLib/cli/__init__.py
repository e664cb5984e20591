"""Command-line interface: one module per sub-command, each with ``add_parser(subparsers)`` and ``run(args)``."""
