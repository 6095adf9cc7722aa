"""One module per `rrl` subcommand, each with `add_arguments(parser)` and `run(args) -> int`."""
