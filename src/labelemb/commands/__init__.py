"""One module per `labelemb` sub-command; each exposes register(subparsers)."""
