"""Command line: thin layer over the stages (parse arguments, call, print)."""
