"""The sender's contact block, with social links (our own icons, labelled with the handle)."""
from typing import Literal

from ..fields import BlockFields, OptionalText, Text, Url

LAYOUT = "section"
CSS_FROM = ("section", "social")  # a section title; social icons

NETWORKS = {
    "twitter": ("Twitter", "https://twitter.com/{}"),
    "x": ("X (Twitter)", "https://x.com/{}"),
    "facebook": ("Facebook", "https://www.facebook.com/{}"),
    "instagram": ("Instagram", "https://www.instagram.com/{}"),
    "linkedin": ("LinkedIn", "https://www.linkedin.com/company/{}"),
    "youtube": ("YouTube", "https://www.youtube.com/@{}"),
}


class Social(BlockFields):
    network: Literal["twitter", "x", "facebook", "instagram", "linkedin", "youtube"]
    handle: Text
    url: Url | None = None

    @property
    def label(self) -> str:
        return NETWORKS[self.network][0]

    @property
    def link(self) -> str:
        return self.url or NETWORKS[self.network][1].format(self.handle.lstrip("@"))


class Fields(BlockFields):
    title: Text = "Contact"
    name: Text
    address: OptionalText = ""
    phone: OptionalText = ""
    email: OptionalText = ""
    website: Url | None = None
    social: list[Social] = []
