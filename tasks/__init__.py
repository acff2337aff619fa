"""One module per component: its DEFAULTS, the packages it needs and its @deploy."""
