// Stand-in for the optional native package msgpackr-extract: behave as if it were not installed.
// Why: tests/js/README.md.
throw new Error('msgpackr-extract: native accelerator not installed (tests/js/stubs/msgpackr-extract)');
