"""Which Twilio host a request was meant for, from its ``Host`` header.

Clients connect to the emulator's loopback address but send the Host of the URL they meant
(like curl's ``--connect-to``). Host forms (TWILIO_FACTS §6;
https://www.twilio.com/docs/global-infrastructure/using-the-twilio-rest-api-in-a-non-us-region):

- ``{product}.twilio.com``: legacy, US1 through the ashburn edge;
- ``{product}.{edge}.{region}.twilio.com``, e.g. ``api.dublin.ie1.twilio.com``;
- ``api.us1.twilio.com``, which the API domain migration guide keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

# The path prefixes each product serves.
PRODUCT_PREFIXES: tuple[tuple[str, str], ...] = (
    ("/v1/Workspaces", "taskrouter"),
    ("/2010-04-01/", "api"),
    ("/v1/Interactions", "flex-api"),
    ("/v1/Conversations", "conversations"),
)
PRODUCTS: tuple[str, ...] = tuple(product for _, product in PRODUCT_PREFIXES)
# Region -> its edge (https://www.twilio.com/docs/global-infrastructure/edge-locations/legacy-regions).
REGION_EDGES: dict[str, str] = {
    "au1": "sydney",
    "ie1": "dublin",
    "jp1": "tokyo",
    "us1": "ashburn",
    "us2": "umatilla",
    "de1": "frankfurt",
    "sg1": "singapore",
    "br1": "sao-paulo",
}
# "Twilio can process your data in the United States, Ireland, or Australia" (API domain
# migration guide); the legacy-regions page maps br1, de1, jp1, sg1 and us2 to api.twilio.com.
# So only these are regions an account can live in and a {product}.{edge}.{region} host can
# name; api.frankfurt.de1.twilio.com and the like are refused (stricter).
REGIONS: tuple[str, ...] = ("us1", "ie1", "au1")
_SUFFIX = ".twilio.com"


@dataclass(frozen=True)
class TwilioHost:
    """A Twilio product host: ``name`` is the normalised host (lower case, no port)."""

    name: str
    product: str
    region: str
    edge: str | None

    @property
    def base_url(self) -> str:
        """What absolute URLs in answers start with: Twilio's, never the emulator's address."""
        return f"https://{self.name}"


class HostRefused(Exception):
    """The Host header names no Twilio product host that is still served."""


def twilio_host(product: str, region: str | None = None) -> str:
    """The host a client should name for ``product`` in ``region`` (None: the legacy host)."""
    if product not in PRODUCTS:
        raise ValueError(f"unknown product {product!r}")
    if region is None:
        return f"{product}{_SUFFIX}"
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}")
    return f"{product}.{REGION_EDGES[region]}.{region}{_SUFFIX}"


def product_for_path(path: str) -> str | None:
    for prefix, product in PRODUCT_PREFIXES:
        if path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/"):
            return product
    return None


def parse_host(raw: str) -> TwilioHost:
    """The Twilio host named by a Host header, or ``HostRefused`` saying why not."""
    name = raw.strip().lower()
    if name.endswith(":443"):
        name = name[:-4]  # Twilio is HTTPS only: 443 is the one port a client may name
    if not name.endswith(_SUFFIX) or ":" in name:
        raise HostRefused(f"{raw!r} is not a Twilio host")
    labels = name[: -len(_SUFFIX)].split(".")
    product = labels[0]
    if product not in PRODUCTS:
        raise HostRefused(f"{raw!r} is not a host of a product the emulator serves")
    if len(labels) == 1:
        return TwilioHost(name, product, "us1", None)
    if len(labels) == 2:
        if labels[1] == "us1" and product == "api":
            return TwilioHost(name, product, "us1", None)
        # API domain migration guide (changelog 2026-02-04): region-only hosts "process all
        # requests in US1 regardless of the region code and will stop working on April 28,
        # 2026". Since then they resolve to nothing: the emulator refuses them with 404/20404
        # (its answer for every host that serves nothing). It names only api.us1.twilio.com as
        # staying; whether {taskrouter,flex-api,conversations}.us1 stay is unstated, so they are
        # refused too (stricter).
        region = labels[1]
        fix = f"the legacy host {product}{_SUFFIX}"
        if region in REGIONS:
            fix = f"{twilio_host(product, region)} or {fix}"
        raise HostRefused(
            f"{name} is a region-only host; those stopped working on 2026-04-28: use {fix}"
        )
    if len(labels) == 3:
        edge, region = labels[1], labels[2]
        if region not in REGIONS:
            raise HostRefused(f"{name}: {region!r} is not a Twilio processing region")
        if REGION_EDGES[region] != edge:
            raise HostRefused(
                f"{name}: edge {edge!r} is not the edge of region {region} ({REGION_EDGES[region]})"
            )
        return TwilioHost(name, product, region, edge)
    raise HostRefused(f"{raw!r} is not a Twilio product host")
