"""The `imagen-sample` command line (`main`), as a package whose imports run one way: `common` (errors, parser,
PNG writing, grids; shared with imagen-eval and imagen-train) <- `arguments` <- `output`, `modes` <- `sample`."""

from .sample import main

__all__ = ["main"]
