"""`python -m imagen.eval`: the same as the `imagen-eval` command."""

from imagen.eval.cli import main

raise SystemExit(main())
