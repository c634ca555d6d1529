"""`python -m sentry_port_assets.cli`: the `sentry-port` command."""

import sys

from sentry_port_assets.cli import main

sys.exit(main())
