"""gigacanvas's version, in a module of its own that depends on nothing.

pyproject.toml reads it from here (setuptools' `attr:`, statically), and `convert` writes it into
the files it makes without reaching up to the package root, whose imports (cluster/, the render
path) an actors/ module should not depend on. `gigacanvas.__version__` re-exports it.
"""

__version__ = "0.1.0"
