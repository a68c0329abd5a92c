"""The Typer CLI: one short module per subcommand."""
