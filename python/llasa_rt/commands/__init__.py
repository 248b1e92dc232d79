"""CLI commands: one module per `llasa-rt` command, each with `register(subparsers)`."""
