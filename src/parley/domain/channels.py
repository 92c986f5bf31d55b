"""Communication channels and message directions."""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    VOICE = "voice"


class Direction(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class ContactKind(StrEnum):
    """What a contact point is: the channels it can serve follow from this."""

    EMAIL = "email"
    PHONE = "phone"

    def serves(self, channel: Channel) -> bool:
        if self is ContactKind.EMAIL:
            return channel is Channel.EMAIL
        return channel in (Channel.SMS, Channel.WHATSAPP, Channel.VOICE)


def contact_kind_for(channel: Channel) -> ContactKind:
    return ContactKind.EMAIL if channel is Channel.EMAIL else ContactKind.PHONE
