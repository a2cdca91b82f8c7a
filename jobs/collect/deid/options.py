"""The de-identification's options (the safe-private allow list, dates, descriptors, burned-in annotation) as the
stage's settings parse them: apart from the profile, so that a collect without ``--deidentify`` never loads pydicom's
dictionaries to parse its settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrivateTag:
    """One private attribute of the safe-private allow list: its group, private creator and element offset."""

    group: int
    creator: str
    element: int

    @classmethod
    def parse(cls, text: str) -> PrivateTag:
        """``gggg:CREATOR:ee`` (hexadecimal group and element offset), e.g. ``0019:GEMS_ACQU_01:10``."""
        group, creator, element = (part.strip() for part in text.split(":"))
        value = cls(int(group, 16), creator, int(element, 16))
        if value.group % 2 == 0 or not creator or not 0 <= value.element <= 0xFF:
            raise ValueError(text)
        return value

    def __str__(self) -> str:
        return f"{self.group:04X}:{self.creator}:{self.element:02X}"


@dataclass(frozen=True)
class DeidOptions:
    """The profile's options, as the stage's settings give them."""

    retain_dates: bool = False
    clean_descriptors: bool = False
    safe_private: tuple[PrivateTag, ...] = ()
    allow_burned_in: bool = False

    def describe(self) -> dict[str, object]:
        return {
            "retain_longitudinal_temporal_information": "modified dates" if self.retain_dates else "off",
            "clean_descriptors": self.clean_descriptors,
            "safe_private": [str(p) for p in self.safe_private],
            "allow_burned_in_annotation": self.allow_burned_in,
        }
