"""Masking of personal data that buyers write into free text (phone numbers, addresses)."""

from __future__ import annotations

import re

# What people put between digit groups: spaces of any width (the ideographic space U+3000
# included), hyphens and dashes of any width, slashes, dots, middle dots; up to three of
# them, so `131 - 2345 - 6789` is one number. Full-width digits are read as digits first.
_SEP = r"[\s\-\u2010-\u2015\u2212\uFF0D/\uFF0F.\uFF0E\u00B7\u30FB_]{0,3}"
# Mainland mobile numbers (optionally +86) and landlines with an area code, and international
# numbers. The look-arounds keep longer digit runs, such as epoch-millisecond timestamps,
# untouched.
_PHONE = re.compile(
    rf"(?<!\d)(?P<cc>[+\uFF0B]?86{_SEP})?(?P<mobile>1{_SEP}[3-9](?:{_SEP}\d){{9}})(?!\d)"
    rf"|(?<![0-9A-Za-z])0\d{{2,3}}{_SEP}\d(?:{_SEP}\d){{6,7}}(?!\d)"
    rf"|(?<![\d+\uFF0B])[+\uFF0B]\d{{1,3}}{_SEP}\d(?:{_SEP}\d){{6,13}}(?!\d)"
)
# Address-like fragments: a run of text ending in a Chinese address unit, or an English
# street line. They are dropped, not masked: nothing in them is needed downstream.
_ADDRESS = re.compile(
    r"[\u4e00-\u9fff\w]{0,24}(?:省|市|区|县|镇|乡|路|街|巷|号|弄|栋|幢|单元|室|小区)"
    r"(?:[\u4e00-\u9fff\w]{0,12}(?:号|栋|幢|单元|室|楼))*"
    r"|\b\d{1,5}\s+\w+(?:\s+\w+){0,3}\s+(?:street|st|road|rd|avenue|ave|lane|ln)\b\.?",
    re.IGNORECASE,
)


_FULL_WIDTH_DIGITS = {0xFF10 + i: str(i) for i in range(10)}


def _mask_digits(match: re.Match) -> str:
    if match.group("mobile"):  # a country code stays readable: +86 138****1234
        return (match.group("cc") or "") + _mask(match.group("mobile"))
    return _mask(match.group(0))


def _mask(text: str) -> str:
    """Keep the first 3 and the last 4 digits."""
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    hidden = set(digits[3:-4])
    return "".join("*" if i in hidden else ch for i, ch in enumerate(text))


def mask_phones(text: str) -> str:
    """`13812341234` -> `138****1234`; the rest of the text is kept. Full-width digits
    (１３８…, common from Chinese input methods) are read as the digits they are."""
    return _PHONE.sub(_mask_digits, text.translate(_FULL_WIDTH_DIGITS))


def mask_personal_data(text: str) -> str:
    """Phone numbers masked and address fragments replaced by `[address]`."""
    return _ADDRESS.sub("[address]", mask_phones(text))
