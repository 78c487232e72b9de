"""``python -m bin_gateway``: the same as the ``bin-gateway`` command."""

from bin_gateway.cli import main

raise SystemExit(main())
