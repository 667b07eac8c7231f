"""The `edgeloop` command line: one module per verb group; commands parse, call the library and print."""
