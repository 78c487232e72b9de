"""The configuration file: TOML in, frozen dataclasses out, every problem reported at once.

- ``settings``: the frozen dataclasses and enums the rest of the gateway reads;
- ``values``: one value at a time (sizes, durations, host:port, addresses, ids);
- ``table``: one TOML table being read, problems recorded instead of raised;
- ``reader``: the sections, in file order, and ``load_config`` / ``parse_config``;
- ``current``: the config in force in a running gateway, shared by its parts;
- ``changes``: what a reload changed, and what of it waits for a restart.
"""

from bin_gateway.config.changes import Reload, plan_reload
from bin_gateway.config.current import CurrentConfig, FollowsConfig
from bin_gateway.config.reader import load_config, parse_config
from bin_gateway.config.settings import (
    RESERVED_LOCAL_PARTS,
    Agency,
    AuthRequirement,
    Config,
    DeliveryMode,
    DeliverySettings,
    DkimSettings,
    GatewaySettings,
    HttpSettings,
    InboundSettings,
    MailingList,
    ModerationSettings,
    Pseudonyms,
    StartTls,
    Subscription,
    TlsSettings,
)
from bin_gateway.config.values import (
    HostPort,
    address_key,
    normalise_address,
    parse_duration,
    parse_host_port,
    parse_size,
)
from bin_gateway.config.values import quoted as quoted  # for members_csv's problem texts

__all__ = [
    "RESERVED_LOCAL_PARTS",
    "Agency",
    "AuthRequirement",
    "Config",
    "CurrentConfig",
    "DeliveryMode",
    "DeliverySettings",
    "DkimSettings",
    "FollowsConfig",
    "GatewaySettings",
    "HostPort",
    "HttpSettings",
    "InboundSettings",
    "MailingList",
    "ModerationSettings",
    "Pseudonyms",
    "Reload",
    "StartTls",
    "Subscription",
    "TlsSettings",
    "address_key",
    "load_config",
    "normalise_address",
    "parse_config",
    "parse_duration",
    "parse_host_port",
    "parse_size",
    "plan_reload",
]
