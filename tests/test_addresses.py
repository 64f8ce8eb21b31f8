"""Email addresses are normalised in exactly one place (design §8): subscribers.addresses.

The fast path (`try_normalise` for plain ASCII addresses) must agree with
email-validator, which is the definition of a valid address here; a
hypothesis differential test holds them together.
"""
from __future__ import annotations

import hashlib

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from subscribers import Address, InvalidAddress, address_hash, display_address, normalise
from subscribers.addresses import try_normalise


@pytest.mark.parametrize(("raw", "email", "key"), [
    ("ada@example.com", "ada@example.com", "ada@example.com"),
    ("  ada@example.com\t\n", "ada@example.com", "ada@example.com"),
    ("Ada.Lovelace@EXAMPLE.Com", "Ada.Lovelace@example.com", "ada.lovelace@example.com"),
    ("O'Brien+news@Mail.Example.ORG", "O'Brien+news@mail.example.org", "o'brien+news@mail.example.org"),
])
def test_normalise_trims_lowercases_domain_and_keeps_local_part(raw: str, email: str, key: str) -> None:
    address = normalise(raw)
    assert address == Address(email, key)


def test_idn_domain_is_stored_as_punycode_whichever_way_it_is_written() -> None:
    # SES does not support SMTPUTF8 (design §9): the domain goes out, so is stored, in ASCII.
    assert normalise("Jose@Bücher.DE") == Address("Jose@xn--bcher-kva.de", "jose@xn--bcher-kva.de")
    assert normalise("x@xn--bcher-kva.de") == Address("x@xn--bcher-kva.de", "x@xn--bcher-kva.de")
    assert normalise("JOSE@XN--BCHER-KVA.DE").key == normalise("jose@bücher.de").key
    assert normalise("jeff@臺網中心.tw") == Address("jeff@xn--fiqq24b10vi0d.tw", "jeff@xn--fiqq24b10vi0d.tw")
    assert normalise("Postmaster@Bücher.de").email == "postmaster@xn--bcher-kva.de"  # RFC 2142, as in ASCII
    for address in (normalise("x@bücher.de"), normalise("jeff@臺網中心.tw")):
        assert address.email.isascii() and address.key.isascii()


@pytest.mark.parametrize(("raw", "shown"), [
    ("zoë.brontë@example.org", "ë"), ("josé@example.org", "é"), ("jöse@bücher.de", "ö"), ("用户@例子.广告", "用户"),
])
def test_a_non_ascii_local_part_is_refused_because_ses_cannot_send_to_it(raw: str, shown: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalise(raw)
    message = str(caught.value)
    assert message.startswith(f"{raw!r} cannot be used: it has non-ASCII characters before the @ ({shown})")
    assert "email to it cannot be sent (Amazon SES does not support SMTPUTF8)" in message
    reason = try_normalise(raw)
    assert isinstance(reason, str) and reason.startswith("it has non-ASCII characters before the @")


def test_an_invalid_idn_domain_is_refused_as_invalid() -> None:
    with pytest.raises(InvalidAddress, match="not a valid email address: .*IDNA"):
        normalise("a@xn--zz.com")


@pytest.mark.parametrize(("stored", "shown"), [
    ("x@xn--bcher-kva.de", "x@bücher.de"),
    ("jeff@xn--fiqq24b10vi0d.tw", "jeff@臺網中心.tw"),
    ("Ada@mail.xn--bcher-kva.de", "Ada@mail.bücher.de"),
    ("ada@example.com", "ada@example.com"),
    ("xn--a@example.com", "xn--a@example.com"),  # only the domain is punycode
    ("x@xn--zz.com", "x@xn--zz.com"),  # not punycode after all: shown as it is
    ("not an address", "not an address"),
])
def test_display_address_shows_a_punycode_domain_in_unicode(stored: str, shown: str) -> None:
    assert display_address(stored) == shown


def test_display_address_round_trips_what_normalise_stores() -> None:
    for raw in ("x@bücher.de", "jeff@臺網中心.tw", "a@mañana.com", "b@ελληνικά.gr"):
        address = normalise(raw)
        assert display_address(address.email) == raw
        assert normalise(display_address(address.email)) == address


def test_the_hash_of_an_idn_address_is_the_hash_it_had_when_stored_in_unicode() -> None:
    # Forgotten people keep only this hash (design §4): it must still match after 0004.
    before = hashlib.sha256("x@bücher.de".encode()).hexdigest()
    assert normalise("x@bücher.de").hash == normalise("X@XN--BCHER-KVA.DE").hash == before
    assert address_hash("x@xn--bcher-kva.de") == before
    assert normalise("jeff@臺網中心.tw").hash == hashlib.sha256("jeff@臺網中心.tw".encode()).hexdigest()


def test_a_held_lookup_finds_an_address_stored_before_non_ascii_local_parts_were_refused() -> None:
    # show/unsubscribe/forget must still reach such a row; add and import still refuse it.
    assert normalise("Zoë.Brontë@Example.org", held=True) == Address("Zoë.Brontë@example.org",
                                                                      "zoë.brontë@example.org")
    assert normalise("jöse@xn--bcher-kva.de", held=True) == Address("jöse@bücher.de", "jöse@bücher.de")
    assert normalise("x@bücher.de", held=True) == normalise("x@bücher.de")
    with pytest.raises(InvalidAddress, match="not a valid email address"):
        normalise("zoë@", held=True)


@pytest.mark.parametrize("raw", [
    "not an email", "ada@", "@example.com", "ada@@example.com", "ada..b@example.com", ".ada@example.com",
    "ada@example", "ada@localhost", "ada@exa mple.com", "ada@-example.com", "ada@example..com",
    '"quoted"@example.com', "ada@[127.0.0.1]", "Ada <ada@example.com>", "a" * 64 + "@" + "b" * 190 + ".com",
    "ada@" + "a" * 64 + ".com", "ada@example.test",
])
def test_invalid_addresses_raise_naming_the_address(raw: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalise(raw)
    message = str(caught.value)
    assert raw.strip() in message
    assert "not a valid email address" in message
    assert isinstance(try_normalise(raw), str)  # the bulk path gives the reason, no exception


@pytest.mark.parametrize("raw", ["", "   ", "\t\n"])
def test_empty_address_is_invalid(raw: str) -> None:
    with pytest.raises(InvalidAddress, match="empty"):
        normalise(raw)


def test_address_hash_is_sha256_hex_of_the_key() -> None:
    address = normalise("  Ada.Lovelace@EXAMPLE.com ")
    expected = hashlib.sha256(b"ada.lovelace@example.com").hexdigest()
    assert address_hash(address.key) == expected
    assert address.hash == expected
    assert len(expected) == 64
    # Case variants of one address share one hash: suppression matches them all.
    assert normalise("ADA.LOVELACE@example.COM").hash == expected
    assert normalise("ada.lovelace@example.org").hash != expected


# --- differential: the fast path against email-validator itself ----------------------------------------

def _reference(raw: str) -> str | None:
    """email-validator's verdict without SMTPUTF8 (SES has none): the ASCII address, or None when it refuses."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return None
    return result.ascii_email  # type: ignore[no-any-return]


def _agree(raw: str) -> None:
    ours = try_normalise(raw)
    theirs = _reference(raw)
    if theirs is None:
        assert isinstance(ours, str), f"{raw!r}: we accept {ours}, email-validator refuses"
    else:
        assert isinstance(ours, Address), f"{raw!r}: we refuse ({ours}), email-validator gives {theirs!r}"
        assert ours.email == theirs, f"{raw!r}: we store {ours.email!r}, email-validator gives {theirs!r}"
        assert ours.key == theirs.lower()


TRICKY = st.sampled_from(
    list("aAbBzZxX019") + list("!#$%&'*+/=?^_`{|}~") + [".", ".", "@", "@", "-", "-", " ", "\t"]
    + list("éÉßøΩжЖ中") + ['"', "(", ")", ",", ":", ";", "<", ">", "[", "]", "\\"])

ATEXT = "abcxyzABCXYZ0189!#$%&'*+/=?^_`{|}~-"
atom = st.text(alphabet=ATEXT, min_size=1, max_size=12)
# RFC 2142 role mailboxes: email-validator lower-cases these local parts.
role = st.sampled_from(["info", "sales", "support", "abuse", "noc", "security", "postmaster", "hostmaster",
                        "webmaster", "www", "news", "ftp", "uucp", "usenet", "marketing"]).flatmap(
    lambda word: st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(word, upper, strict=True))))
local = st.one_of(st.lists(atom, min_size=1, max_size=4).map(".".join), role,
                  st.text(alphabet=ATEXT + ".", min_size=1, max_size=70),
                  st.sampled_from(["zoë.brontë", "josé", "用户", "Ölaf"]))  # SMTPUTF8: refused by both
label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,14}[A-Za-z0-9])?", fullmatch=True)
tld = st.sampled_from(["com", "ORG", "uk", "Co", "dev", "test", "local", "example", "io", "xn--p1ai", "123"])
domain = st.one_of(
    st.builds(lambda labels, top: ".".join([*labels, top]), st.lists(label, min_size=1, max_size=3), tld),
    st.text(alphabet="abcXYZ09.-", min_size=1, max_size=20),
    st.sampled_from(["xn--bcher-kva.de", "Bücher.de", "XN--BCHER-KVA.DE", "臺網中心.tw", "xn--zz.com", "exa_mple.com",
                     "a" * 64 + ".com", "a" * 63 + ".com"]),
)
padding = st.sampled_from(["", " ", "\t", "\n", "  \r\n"])
composed = st.one_of(
    st.builds(lambda p1, lo, d, p2: f"{p1}{lo}@{d}{p2}", padding, local, domain, padding),
    st.from_regex(r"[A-Za-z0-9._%+-]{1,20}@[A-Za-z0-9.-]{1,20}\.[A-Za-z]{2,6}", fullmatch=True),
)


@settings(max_examples=500, deadline=None)
@given(st.text(TRICKY, max_size=30))
@example("Info@example.com")
@example("ab@cd.com\n")
def test_fast_path_agrees_with_email_validator_on_tricky_strings(raw: str) -> None:
    _agree(raw)


@settings(max_examples=500, deadline=None)
@given(composed)
@example("Postmaster@Example.com")
@example("a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com")
def test_fast_path_agrees_with_email_validator_on_well_formed_looking_addresses(raw: str) -> None:
    _agree(raw)
