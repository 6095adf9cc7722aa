"""The `rrl` command line: parses arguments, then calls into the packages."""
