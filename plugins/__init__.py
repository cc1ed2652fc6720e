"""opreg's built-in ops, installed under the import name ``opreg_builtins``.

Each module here is an ordinary opreg plugin: it implements the ``opreg_register_ops`` hook exactly as a
third-party op package does, and each op sits beside its derivative.
"""
