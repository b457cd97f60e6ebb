"""`python -m smite` is the `smite` command."""

from .cli.main import main

raise SystemExit(main())
