"""Exit codes shared by the command modules."""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
