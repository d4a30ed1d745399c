"""Merchant webhook endpoints, from a TOML file. Secrets come from a file or an environment
variable named in it, never from the command line or the file itself.

    [defaults]                      # every endpoint, unless it says otherwise
    timeout_seconds = 5
    max_attempts = 6
    backoff_base_seconds = 1        # exponential backoff with full jitter ...
    backoff_max_seconds = 300       # ... capped; so is a 429's Retry-After, which wins
    concurrency = 4                 # requests in flight per endpoint
    rate_per_second = 10            # requests started per second per endpoint
    digest_window_seconds = 0       # > 0: a digest_key's notifications within it go as one

    [merchants.M00001]
    url = "https://hooks.example.com/parcelwatch"
    secret_env = "PARCELWATCH_WEBHOOK_SECRET_M00001"   # or secret_file = "/run/secrets/m1"
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

import httpx
import msgspec

from alerts.webhooks import SecretError, secret_key
from models.settings import ConfigError, NonNegative, Positive, PositiveInt


class Policy(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    timeout_seconds: Positive = 5
    max_attempts: PositiveInt = 6
    backoff_base_seconds: Positive = 1
    backoff_max_seconds: Positive = 300
    concurrency: PositiveInt = 4
    rate_per_second: Positive = 10
    digest_window_seconds: NonNegative = 0


class MerchantEntry(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://")]
    secret_env: str | None = None
    secret_file: str | None = None


class EndpointsFile(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    defaults: Policy = msgspec.field(default_factory=Policy)
    # Merchant id -> its entry, plus any `Policy` field that overrides the defaults.
    merchants: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class Endpoint(msgspec.Struct, kw_only=True, frozen=True):
    merchant_id: str
    url: str
    key: bytes
    policy: Policy


def load_endpoints(path: str | Path, environ: dict[str, str] | None = None
                   ) -> dict[str, Endpoint]:
    """Merchant id -> endpoint. A problem raises `ConfigError` with a one-line reason."""
    environ = dict(os.environ if environ is None else environ)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        parsed = msgspec.convert(data, EndpointsFile)
    except FileNotFoundError:
        raise ConfigError(f"endpoints file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"endpoints file {path} cannot be read: {exc}") from None
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid endpoints file {path}: {exc}") from None
    endpoints = {}
    defaults = msgspec.to_builtins(parsed.defaults)
    for merchant, fields in parsed.merchants.items():
        overrides = {k: v for k, v in fields.items() if k in Policy.__struct_fields__}
        try:
            entry = msgspec.convert({k: v for k, v in fields.items() if k not in overrides},
                                    MerchantEntry)
            policy = msgspec.convert(defaults | overrides, Policy)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"invalid endpoints file {path}: merchant {merchant}: {exc}"
                              ) from None
        try:
            if not httpx.URL(entry.url).host:
                raise httpx.InvalidURL("no host")
        except httpx.InvalidURL as exc:
            raise ConfigError(f"merchant {merchant}: url {entry.url!r} is invalid: {exc}"
                              ) from None
        endpoints[merchant] = Endpoint(merchant_id=merchant, url=entry.url,
                                       key=_secret(merchant, entry, environ), policy=policy)
    return endpoints


def _secret(merchant: str, entry: MerchantEntry, environ: dict[str, str]) -> bytes:
    if (entry.secret_env is None) == (entry.secret_file is None):
        raise ConfigError(f"merchant {merchant}: give exactly one of secret_env, secret_file")
    if entry.secret_env is not None:
        secret = environ.get(entry.secret_env)
        if secret is None:
            raise ConfigError(f"merchant {merchant}: environment variable {entry.secret_env} "
                              "is not set")
    else:
        try:
            secret = Path(entry.secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"merchant {merchant}: secret file {entry.secret_file} cannot "
                              f"be read: {exc.strerror}") from None
    try:
        return secret_key(secret)
    except SecretError as exc:
        raise ConfigError(f"merchant {merchant}: {exc}") from None
