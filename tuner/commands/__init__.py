"""Subcommands of ``tuner``: each module has ``register(subparsers)`` and ``run(args)``."""
