"""``python -m splatstudio``: the same as the ``splatstudio`` command."""

from .cli import main

raise SystemExit(main())
