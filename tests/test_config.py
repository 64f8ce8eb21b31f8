"""Configuration (design §5): newsletter.toml, overridden by NEWSLETTER_* variables; secrets only from the environment.

Every test passes its own `environ` mapping, so the real environment of the
test run never leaks in, and writes real TOML files into tmp_path.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError, NewsletterError


def toml(tmp_path: Path, text: str, name: str = "newsletter.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def config_error(path: Path | None, environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ)
    return str(info.value)


# --- defaults ---------------------------------------------------------------------------------------


def test_defaults_follow_the_design(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./newsletter.toml here
    s = load_settings(None, {})
    assert s.database_url == "sqlite:///newsletter.db"
    assert s.transport == "file"
    assert s.outbox == "outbox/"
    assert s.from_address is None
    assert s.base_url == "http://127.0.0.1:8025"
    assert s.secret is None
    assert s.ses_configuration_set is None
    assert s.ses_max_rate is None
    assert s.sqs_queue_url is None
    assert s.sns_topic_arns == ()
    assert s == Settings()


def test_config_error_belongs_to_the_edge_family() -> None:
    assert issubclass(ConfigError, NewsletterError)


# --- the file ---------------------------------------------------------------------------------------


def test_file_values_in_a_newsletter_table(tmp_path: Path) -> None:
    path = toml(tmp_path, """
[newsletter]
database_url = "sqlite:///other.db"
transport = "ses"
outbox = "mail-out/"
from_address = "LVRN News <news@lancsvrn.example>"
base_url = "https://news.example.org"
ses_configuration_set = "newsletter-events"
ses_max_rate = 14
sqs_queue_url = "https://sqs.eu-west-2.amazonaws.com/123456789012/ses-events"
sns_topic_arns = ["arn:aws:sns:eu-west-2:123456789012:a", "arn:aws:sns:eu-west-2:123456789012:b"]
organisation = "LVRN"
postal_address = "County Hall, Preston"
reason = "You signed up."
""")
    s = load_settings(path, {})
    assert s == Settings(
        database_url="sqlite:///other.db", transport="ses", outbox="mail-out/",
        from_address="LVRN News <news@lancsvrn.example>", base_url="https://news.example.org",
        ses_configuration_set="newsletter-events", ses_max_rate=14.0,
        sqs_queue_url="https://sqs.eu-west-2.amazonaws.com/123456789012/ses-events",
        sns_topic_arns=("arn:aws:sns:eu-west-2:123456789012:a", "arn:aws:sns:eu-west-2:123456789012:b"),
        organisation="LVRN", postal_address="County Hall, Preston", reason="You signed up.")
    assert isinstance(s.ses_max_rate, float)
    assert isinstance(s.sns_topic_arns, tuple)


def test_file_values_at_top_level(tmp_path: Path) -> None:
    s = load_settings(toml(tmp_path, 'transport = "smtp"\nbase_url = "https://a.example"\n'), {})
    assert (s.transport, s.base_url) == ("smtp", "https://a.example")


def test_shipped_sample_is_a_valid_config() -> None:
    from tests.conftest import ROOT
    sample = ROOT / "newsletter.toml.sample"
    assert load_settings(sample, {}) == Settings()


def test_default_file_in_the_working_directory_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml(tmp_path, 'base_url = "https://cwd.example"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, {}).base_url == "https://cwd.example"


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    message = config_error(tmp_path / "absent.toml", {})
    assert "absent.toml" in message and "not found" in message


def test_malformed_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path, "base_url = \n[[[\n")
    message = config_error(path, {})
    assert str(path) in message


# --- the environment --------------------------------------------------------------------------------


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path, 'transport = "smtp"\nbase_url = "https://file.example"\noutbox = "file-out/"\n')
    s = load_settings(path, {"NEWSLETTER_BASE_URL": "https://env.example", "NEWSLETTER_TRANSPORT": "ses"})
    assert s.base_url == "https://env.example"
    assert s.transport == "ses"
    assert s.outbox == "file-out/"  # untouched by the environment


def test_empty_environment_variable_does_not_override(tmp_path: Path) -> None:
    path = toml(tmp_path, 'base_url = "https://file.example"\n')
    assert load_settings(path, {"NEWSLETTER_BASE_URL": ""}).base_url == "https://file.example"


@pytest.mark.parametrize("variable, field, value", [
    ("NEWSLETTER_DATABASE_URL", "database_url", "postgresql+psycopg://u@127.0.0.1/db"),
    ("NEWSLETTER_TRANSPORT", "transport", "smtp"),
    ("NEWSLETTER_OUTBOX", "outbox", "/var/outbox"),
    ("NEWSLETTER_FROM", "from_address", "news@example.org"),
    ("NEWSLETTER_BASE_URL", "base_url", "https://n.example.org"),
    ("NEWSLETTER_SECRET", "secret", "Vd8-kP2qLx9wRt4ZbN7cHj3mF6sYa1Ue"),
    ("NEWSLETTER_SES_CONFIGURATION_SET", "ses_configuration_set", "events"),
    ("NEWSLETTER_SQS_QUEUE_URL", "sqs_queue_url", "https://sqs.example/q"),
])
def test_each_environment_variable(variable: str, field: str, value: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert getattr(load_settings(None, {variable: value}), field) == value


def test_sns_topic_arns_is_a_comma_separated_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, {"NEWSLETTER_SNS_TOPIC_ARNS": " arn:aws:sns:eu-west-2:1:a ,arn:aws:sns:eu-west-2:1:b,, "})
    assert s.sns_topic_arns == ("arn:aws:sns:eu-west-2:1:a", "arn:aws:sns:eu-west-2:1:b")
    assert load_settings(None, {"NEWSLETTER_SNS_TOPIC_ARNS": "arn:one"}).sns_topic_arns == ("arn:one",)


@pytest.mark.parametrize("value, rate", [("14", 14.0), ("2.5", 2.5), (" 0.5 ", 0.5), ("1e2", 100.0)])
def test_ses_max_rate_is_a_float(value: str, rate: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, {"NEWSLETTER_SES_MAX_RATE": value})
    assert s.ses_max_rate == rate
    assert isinstance(s.ses_max_rate, float)


@pytest.mark.parametrize("value", ["fast", "0", "-1", "-0.5", "nan", "1,5", "-inf"])
def test_ses_max_rate_must_be_a_positive_number(value: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    message = config_error(None, {"NEWSLETTER_SES_MAX_RATE": value})
    assert "ses_max_rate" in message and "positive number" in message


@pytest.mark.parametrize("value", ["true", '"fast"', "0", "-3", "[1]"])
def test_ses_max_rate_in_the_file_must_be_a_positive_number(value: str, tmp_path: Path) -> None:
    message = config_error(toml(tmp_path, f"ses_max_rate = {value}\n"), {})
    assert "ses_max_rate" in message


# --- refusals ---------------------------------------------------------------------------------------


def test_secret_in_the_file_is_refused_naming_the_variable(tmp_path: Path) -> None:
    path = toml(tmp_path, '[newsletter]\nsecret = "do-not-write-me-here"\n')
    message = config_error(path, {})
    assert "NEWSLETTER_SECRET" in message
    assert "environment" in message
    assert "do-not-write-me-here" not in message  # the error must not echo the secret


def test_unknown_key_is_refused_naming_the_known_keys(tmp_path: Path) -> None:
    message = config_error(toml(tmp_path, 'base_ulr = "https://x.example"\n'), {})
    assert "base_ulr" in message
    for known in ("base_url", "database_url", "transport", "outbox", "sns_topic_arns"):
        assert known in message
    assert "secret" not in message.split("known:")[1]  # secrets are not offered as file keys


@pytest.mark.parametrize("source", ["file", "env"])
def test_bad_transport_is_refused(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    if source == "file":
        message = config_error(toml(tmp_path, 'transport = "pigeon"\n'), {})
    else:
        message = config_error(None, {"NEWSLETTER_TRANSPORT": "pigeon"})
    assert "pigeon" in message
    assert "ses" in message and "file" in message and "smtp" in message


def test_bad_base_url_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    message = config_error(None, {"NEWSLETTER_BASE_URL": "news.example.org"})
    assert "base_url" in message and "http" in message


@pytest.mark.parametrize("line", ['database_url = 5', 'outbox = ["a", "b"]', 'from_address = true',
                                  'organisation = {name = "x"}', 'sns_topic_arns = 7'])
def test_mistyped_file_values_are_refused(line: str, tmp_path: Path) -> None:
    key = line.split(" ")[0]
    message = config_error(toml(tmp_path, line + "\n"), {})
    assert key in message


def test_every_problem_is_reported_together(tmp_path: Path) -> None:
    path = toml(tmp_path, 'secret = "x"\ncolour = "red"\ntransport = "pigeon"\n')
    message = config_error(path, {"NEWSLETTER_SES_MAX_RATE": "-1", "NEWSLETTER_BASE_URL": "ftp://x"})
    lines = message.splitlines()
    assert len(lines) == 5
    assert any("NEWSLETTER_SECRET" in line for line in lines)
    assert any("colour" in line for line in lines)
    assert any("pigeon" in line for line in lines)
    assert any("ses_max_rate" in line for line in lines)
    assert any("base_url" in line for line in lines)


def test_environment_can_fix_a_bad_file_value(tmp_path: Path) -> None:
    # The environment wins, so only the value actually used is judged.
    path = toml(tmp_path, 'transport = "pigeon"\n')
    assert load_settings(path, {"NEWSLETTER_TRANSPORT": "ses"}).transport == "ses"


# --- the Settings object ----------------------------------------------------------------------------


def test_settings_are_frozen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.base_url = "https://elsewhere.example"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.secret = "x"  # type: ignore[misc]


def test_repr_hides_the_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    secret = "hunter2-very-secret-but-long-enough-now"
    s = load_settings(None, {"NEWSLETTER_SECRET": secret,
                             "NEWSLETTER_DATABASE_URL": "postgresql+psycopg://news:pg-pass-word@db/news"})
    assert s.secret == secret
    for shown in (repr(s), str(s)):
        assert secret not in shown and "pg-pass-word" not in shown
    assert "base_url" in repr(s) and "postgresql+psycopg://news:***@db/news" in repr(s)


def test_with_overrides_applies_flags_over_everything(tmp_path: Path) -> None:
    path = toml(tmp_path, 'base_url = "https://file.example"\n')
    s = load_settings(path, {"NEWSLETTER_BASE_URL": "https://env.example"})
    flagged = s.with_overrides(base_url="https://flag.example", ses_max_rate=None)
    assert flagged.base_url == "https://flag.example"
    assert flagged.ses_max_rate is None
    assert s.base_url == "https://env.example"  # the original is unchanged


def test_the_sample_file_is_valid_with_every_setting_uncommented(tmp_path) -> None:
    # newsletter.toml.sample documents every setting; each must be one load_settings accepts.
    import re

    from newsletter.config import load_settings

    from .conftest import ROOT
    text = (ROOT / "newsletter.toml.sample").read_text("utf-8")
    full = tmp_path / "newsletter.toml"
    full.write_text(re.sub(r"(?m)^# ([a-z_]+ = .*)$", r"\1", text), "utf-8")
    settings = load_settings(full, {})
    assert settings.smtp_url == "smtp://localhost:25" and settings.ses_max_rate == 14.0
    assert settings.unsubscribe_mailto and settings.sns_topic_arns and settings.from_address


# --- the signing secret (issue 12: a one-character secret was accepted; a dictionary one fell in 0.03 s) ---


def _makefile_demo_secret() -> str:
    import re

    from .conftest import ROOT
    found = re.search(r"(?m)^DEMO_SECRET := (\S+)$", (ROOT / "Makefile").read_text("utf-8"))
    assert found, "Makefile has no DEMO_SECRET"
    return found.group(1)


@pytest.mark.parametrize("secret", ["k", "s", "hunter2", "x" * 31, "Vd8-kP2qLx9wRt4ZbN7cHj3mF6sYa1U"])
def test_a_secret_under_32_characters_is_refused_with_how_to_make_one(secret: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    message = config_error(None, {"NEWSLETTER_SECRET": secret})
    assert "NEWSLETTER_SECRET" in message and "at least 32" in message and f"({len(secret)} characters" in message
    assert "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'" in message
    assert len(secret) < 4 or secret not in message  # never echoed


@pytest.mark.parametrize("secret", [
    "demo-only-not-a-secret" * 2, "changeme" * 4, "CHANGEME-CHANGEME-CHANGEME-CHANGEME", "secret-" * 5,
    "your-secret-here-your-secret-here", "password1password2password3password4",
    "put-a-long-random-string-here" * 2,
])
def test_a_known_placeholder_is_refused_however_often_repeated(secret: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    message = config_error(None, {"NEWSLETTER_SECRET": secret})
    assert "placeholder" in message and "token_urlsafe(32)" in message
    assert secret not in message


@pytest.mark.parametrize("secret", ["a" * 40, "ab" * 20, "0123456" * 6])
def test_a_secret_of_few_different_characters_is_refused(secret: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert "token_urlsafe(32)" in config_error(None, {"NEWSLETTER_SECRET": secret})


def test_a_random_secret_and_the_makefile_demo_secret_are_accepted(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import secrets
    monkeypatch.chdir(tmp_path)
    for secret in (secrets.token_urlsafe(32), _makefile_demo_secret(), "correct horse battery staple, moored"):
        assert load_settings(None, {"NEWSLETTER_SECRET": secret}).secret == secret


def test_the_secret_problem_is_listed_with_the_others(tmp_path: Path) -> None:
    message = config_error(toml(tmp_path, 'transport = "pigeon"\n'), {"NEWSLETTER_SECRET": "k"})
    assert len(message.splitlines()) == 2 and "pigeon" in message and "at least 32" in message


# --- trusted proxies --------------------------------------------------------------------------------


def test_no_proxy_is_trusted_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, {}).trusted_proxies == ()


def test_trusted_proxies_from_the_environment_and_the_file(tmp_path: Path) -> None:
    env = load_settings(None, {"NEWSLETTER_TRUSTED_PROXIES": " 10.0.0.0/8 , 127.0.0.1,2001:db8::/32,192.0.2.7/24"})
    assert env.trusted_proxies == ("10.0.0.0/8", "127.0.0.1/32", "2001:db8::/32", "192.0.2.0/24")
    path = toml(tmp_path, 'trusted_proxies = ["172.16.0.0/12", "::1"]\n')
    assert load_settings(path, {}).trusted_proxies == ("172.16.0.0/12", "::1/128")


@pytest.mark.parametrize("value", ["localhost", "10.0.0.0/33", "1.2.3", "proxy.example.org", "10.0.0.1,nope"])
def test_a_trusted_proxy_that_is_no_address_or_network_is_refused(value: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    message = config_error(None, {"NEWSLETTER_TRUSTED_PROXIES": value})
    assert "trusted_proxies" in message and "not an IP address or network" in message


# --- database URLs are shown with the password masked ------------------------------------------------


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg://news:pg-pass-word@db.example:5432/news", "postgresql+psycopg://news:***@db.example:5432/news"),
    ("postgresql://news:p@ss:w0rd-x@db/news", "postgresql://news:***@db/news"),
    ("postgresql://news:pg-pass-word@db:notaport/news", "postgresql://news:***@db:notaport/news"),
    ("postgresql://news@db/news?password=pg-pass-word&sslmode=require",
     "postgresql://news@db/news?password=***&sslmode=require"),
    ("sqlite:///newsletter.db", "sqlite:///newsletter.db"),
])
def test_masked_url_hides_the_password(url: str, shown: str) -> None:
    from newsletter.config import hide_passwords, masked_url
    assert masked_url(url) == shown
    assert "pg-pass-word" not in hide_passwords(f"could not open {url!r}; also {url}")


def test_a_database_url_with_an_unencoded_at_in_its_password_is_refused_masked(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    message = config_error(None, {"NEWSLETTER_DATABASE_URL": "postgresql+psycopg://news:ab@cd-secret@db/news"})
    assert "%40" in message and "postgresql+psycopg://news:***@db/news" in message
    assert "cd-secret" not in message
    encoded = load_settings(None, {"NEWSLETTER_DATABASE_URL": "postgresql+psycopg://news:ab%40cd@db/news"})
    assert encoded.database_url.endswith("ab%40cd@db/news")
