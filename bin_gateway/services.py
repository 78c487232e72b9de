"""The long-lived parts every command and worker shares, built once from the config."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .link_tokens import LinkSigner
from .signing import Signer
from .store import Store, open_store

DATABASE_NAME = "gateway.db"


@dataclass(slots=True)
class Services:
    config: Config
    store: Store
    signer: Signer
    links: LinkSigner  # signs the links in mail (one-click unsubscribe)

    async def close(self) -> None:
        await self.store.close()


async def open_services(config: Config) -> Services:
    """Open (and migrate) the store and load the DKIM key; raise on a broken install."""
    signer = Signer.load(
        domain=config.gateway.domain,
        selector=config.dkim.selector,
        key_path=config.dkim.private_key,
    )
    store = await open_store(config.gateway.data_dir / DATABASE_NAME)
    links = LinkSigner.load_or_create(config.gateway.data_dir)
    return Services(config=config, store=store, signer=signer, links=links)
