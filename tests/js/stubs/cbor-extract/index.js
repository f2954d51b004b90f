// Stand-in for the optional native package cbor-extract: behave as if it were not installed.
// Why: tests/js/README.md.
throw new Error('cbor-extract: native accelerator not installed (tests/js/stubs/cbor-extract)');
