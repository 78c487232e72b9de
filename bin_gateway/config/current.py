"""The configuration in force: one object a running gateway's parts share.

A SIGHUP reload (``app.serve``) puts a new :class:`Config` into the one
:class:`CurrentConfig` the gateway built at start; every part that reads settings holds
that object and reads ``.config`` at each use, so new work follows the new file and no
part keeps a stale copy. Work already under way may finish under the settings it began
with: each read sees one whole, validated config.

Parts that inherit :class:`FollowsConfig` keep reading ``self._config`` as before; it is
a property over the shared object.
"""

from __future__ import annotations

from bin_gateway.config.settings import Config


class CurrentConfig:
    """Holds the config in force; ``config`` is replaced whole on a reload."""

    __slots__ = ("config",)

    def __init__(self, config: Config) -> None:
        self.config = config


class FollowsConfig:
    """Mixin: ``self._config`` is whatever config is in force now (set ``_current``)."""

    _current: CurrentConfig

    @property
    def _config(self) -> Config:
        return self._current.config
