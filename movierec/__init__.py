"""movierec: the composition root: the CLI and the embedded all-in-one demo."""
