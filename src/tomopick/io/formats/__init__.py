"""One module per format family; each registers its formats with :mod:`tomopick.io.registry` when imported.
Importing this package imports none of them: the registry loads them all, in the order of
``tomopick.io.registry.BUILTIN_FORMAT_MODULES``, the first time it is used."""
