"""First-party marsctl plugins."""
