"""A row of social network icons, each a link; icons ship with the project (never hot-linked)."""
from typing import Literal

from pydantic import Field, model_validator

from ..fields import BlockFields, Url

LIST_FIELD = "items"

# Every network has icons/<network>-light.png and -dark.png in components/themes/icons/.
Network = Literal["twitter", "x", "facebook", "instagram", "linkedin", "youtube", "tiktok", "mastodon",
                  "bluesky", "threads", "whatsapp", "email", "website"]
NETWORKS: dict[str, str] = {
    "twitter": "Twitter", "x": "X", "facebook": "Facebook", "instagram": "Instagram", "linkedin": "LinkedIn",
    "youtube": "YouTube", "tiktok": "TikTok", "mastodon": "Mastodon", "bluesky": "Bluesky", "threads": "Threads",
    "whatsapp": "WhatsApp", "email": "Email", "website": "Website",
}


class Link(BlockFields):
    network: Network
    url: Url

    @model_validator(mode="after")
    def _scheme_fits_network(self) -> "Link":
        is_mail = self.url.lower().startswith("mailto:")
        if self.network == "email" and not is_mail:
            raise ValueError("an email link is a mailto: address, e.g. mailto:hello@example.org")
        if self.network != "email" and is_mail:
            raise ValueError(f"a {NETWORKS[self.network]} link is a web address (https://…), not mailto:")
        return self

    @property
    def label(self) -> str:
        return NETWORKS[self.network]


class Fields(BlockFields):
    items: list[Link] = Field(min_length=1, max_length=12)
    align: Literal["left", "center"] = "center"
