"""Masking of personal data: models.privacy."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.privacy import mask_personal_data, mask_phones


@pytest.mark.parametrize(("text", "masked"), [
    ("13812341234", "138****1234"),
    ("19987654321", "199****4321"),
    ("138 1234 1234", "138 **** 1234"),
    ("138-1234-1234", "138-****-1234"),
    ("联系电话13812341234谢谢", "联系电话138****1234谢谢"),
    ("call me: 15500001111.", "call me: 155****1111."),
    ("１８８－２２２２－３３３３", "188－****－3333"),         # full width, digits and hyphens
    ("188\u30002222\u30003333", "188\u3000****\u30003333"),  # the ideographic space
    ("131 - 2345 - 6789", "131 - **** - 6789"),
    ("133  4444  6666", "133  ****  6666"),
    ("133/4444/6666", "133/****/6666"),
    ("138.1234.1234", "138.****.1234"),
    ("138—1234—1234", "138—****—1234"),
])
def test_mainland_mobiles_are_masked(text, masked):
    assert mask_phones(text) == masked
    assert mask_personal_data(text) == masked


def national(masked: str) -> str:
    """The masked text without separators and without the +86 / 86 country code."""
    return re.sub(r"^\+?86", "", re.sub(r"[ -]", "", masked))


@pytest.mark.parametrize("text", [
    "+8613812341234",
    "+86 13812341234",
    "+86 138 1234 1234",
    "+86-138-1234-1234",
    "86 138 1234 1234",
])
def test_mobiles_with_country_code_are_masked_in_the_same_style(text):
    masked = mask_phones(text)
    assert "13812341234" not in re.sub(r"[ -]", "", masked)
    assert masked.startswith(("+86", "86"))
    # 138****1234: the first three and last four digits of the number stay, four are hidden.
    assert national(masked) == "138****1234", masked


def test_several_numbers_in_one_text():
    text = "买家13912345678，备用 186-0000-1111"
    assert mask_phones(text) == "买家139****5678，备用 186-****-1111"


@pytest.mark.parametrize("text", [
    "1712345678901",
    "ts=1712345678901",
    '{"ts": 1712345678901, "waybill": "SF1234567890123"}',
    "order 2024061512345678",  # long digit runs are not phone numbers
])
def test_epoch_ms_and_long_digit_runs_are_untouched(text):
    assert mask_phones(text) == text


def test_timestamp_next_to_a_phone():
    text = '{"ts":1712345678901,"note":"13812341234"}'
    assert mask_phones(text) == '{"ts":1712345678901,"note":"138****1234"}'


@pytest.mark.parametrize(("text", "gone"), [
    ("浙江省杭州市西湖区文三路123号", ["杭州", "文三路", "123"]),
    ("收货地址：上海市浦东新区张江路88弄5号302室，放门口", ["上海", "张江路", "302"]),
    ("送到北京市朝阳区建国路88号3栋502室", ["北京", "建国路", "502"]),
    ("幸福小区2单元", ["幸福"]),
])
def test_chinese_address_fragments_are_replaced(text, gone):
    masked = mask_personal_data(text)
    assert "[address]" in masked
    for fragment in gone:
        assert fragment not in masked


def test_phone_and_address_together():
    text = "没收到货！电话13812341234，地址广州市天河区体育西路1号"
    masked = mask_personal_data(text)
    assert "138****1234" in masked
    assert "[address]" in masked
    assert "13812341234" not in masked and "体育西路" not in masked
    assert masked.startswith("没收到货！")


def test_plain_text_is_kept():
    text = "Package never arrived, 包裹没有收到 (order O-1001)"
    assert mask_personal_data(text) == text


def test_mask_phones_keeps_addresses():
    assert mask_phones("杭州市文三路") == "杭州市文三路"


TEXT = st.text(
    alphabet=st.one_of(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
                       st.characters(min_codepoint=0x20, max_codepoint=0x7E)),
    max_size=30,
)
NOT_A_DIGIT = st.one_of(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
                        st.sampled_from(list(" ,.:;!?()[]-+/#abcXYZ")))
MOBILE = st.builds(lambda second, rest: f"1{second}{rest}",
                   st.sampled_from("3456789"), st.text(alphabet="0123456789", min_size=9,
                                                       max_size=9))


@settings(max_examples=200, deadline=None)
@given(TEXT, NOT_A_DIGIT, MOBILE, NOT_A_DIGIT, TEXT, st.booleans(), st.booleans())
def test_property_no_mobile_survives(before, left, mobile, right, after, at_start, at_end):
    # The number stands on its own: the characters next to it are not digits (or none).
    text = ("" if at_start else before + left) + mobile + ("" if at_end else right + after)
    masked = mask_personal_data(text)
    assert mobile not in masked
    assert mobile not in mask_phones(text)


SEPARATORS = st.sampled_from([" ", "  ", "\u3000", "-", "－", "‐", "–", "—", " - ", "/", "／",
                              ".", "．", "·", ""])
FULL_WIDTH = {str(i): chr(0xFF10 + i) for i in range(10)}


@st.composite
def written_mobiles(draw) -> tuple[str, str]:
    """A mobile number as people type it: each digit ASCII or full width, any separator
    between any digits (3-4-4 or not). Returns (the digits, how it is written)."""
    digits = draw(MOBILE)
    written = ""
    for i, digit in enumerate(digits):
        if i:
            written += draw(SEPARATORS) if draw(st.booleans()) or i in (3, 7) else ""
        written += FULL_WIDTH[digit] if draw(st.booleans()) else digit
    return digits, written


def digits_only(text: str) -> str:
    return re.sub(r"\D", "", text.translate({ord(v): k for k, v in FULL_WIDTH.items()}))


BOUNDARY = st.one_of(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
                    st.sampled_from(list("abcXYZ#!?")))  # neither a digit nor a separator


@settings(max_examples=300, deadline=None)
@given(TEXT, BOUNDARY, written_mobiles(), BOUNDARY, TEXT)
def test_property_no_mobile_survives_however_it_is_written(before, left, mobile, right,
                                                           after):
    digits, written = mobile
    start = len(before + left)
    text = before + left + written + right + after
    masked = mask_phones(text)
    region = masked[start:start + len(written)]  # masking keeps every character's place
    assert digits_only(region) == digits[:3] + digits[7:], (written, region)
    assert region.count("*") == 4
    assert written not in mask_personal_data(text)
