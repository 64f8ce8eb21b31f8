"""Dates for the diary: each event with its date, time, title, place and link."""
import datetime as dt

from pydantic import Field

from ..fields import BlockFields, OptionalText, Text, Url

LIST_FIELD = "items"

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class Event(BlockFields):
    date: dt.date
    time: OptionalText = ""  # as the reader should see it: "7pm", "10:00–12:30"
    title: Text
    place: OptionalText = ""
    url: Url | None = None

    @property
    def month(self) -> str:
        return MONTHS[self.date.month - 1]

    @property
    def when(self) -> str:
        """Tuesday 14 May 2024, 7pm"""
        day = f"{WEEKDAYS[self.date.weekday()]} {self.date.day} {self.month} {self.date.year}"
        return f"{day}, {self.time}" if self.time else day


class Fields(BlockFields):
    items: list[Event] = Field(min_length=1)
