"""SENTRY_PORT_RESYNC_MINUTES becomes a cron expression, or a clear error."""

from __future__ import annotations

import pytest

from sentry_port_assets.config import ConfigError, resync_cron


@pytest.mark.parametrize(("minutes", "cron"), [
    (1, "* * * * *"), (15, "*/15 * * * *"), (60, "0 * * * *"), (120, "0 */2 * * *"), (1440, "0 0 * * *"),
])
def test_resync_minutes_become_cron(minutes: int, cron: str) -> None:
    assert resync_cron(minutes) == cron


@pytest.mark.parametrize("minutes", [0, 7, 90, 2880])
def test_minutes_cron_cannot_express_are_refused_by_name(minutes: int) -> None:
    with pytest.raises(ConfigError, match="SENTRY_PORT_RESYNC_MINUTES"):
        resync_cron(minutes)
