"""Exact money handling: decimal strings and WooCommerce minor-unit strings → ISO 4217 minor units.

No floats anywhere; nothing here knows about products.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

__all__ = ["ISO_EXPONENT", "clear_caches", "decimal_to_minor", "exponent", "rescale_minor"]

#: ISO 4217 minor-unit exponents that differ from the default of 2
ISO_EXPONENT: dict[str, int] = {
    "JPY": 0,
    "KRW": 0,
    "VND": 0,
    "CLP": 0,
    "ISK": 0,
    "UGX": 0,
    "XAF": 0,
    "XOF": 0,
    "PYG": 0,
    "RWF": 0,
    "BIF": 0,
    "DJF": 0,
    "GNF": 0,
    "KMF": 0,
    "VUV": 0,
    "XPF": 0,
    "KWD": 3,
    "BHD": 3,
    "OMR": 3,
    "JOD": 3,
    "IQD": 3,
    "LYD": 3,
    "TND": 3,
}
_MAX_DIGITS = 30


def exponent(currency: str) -> int:
    """ISO 4217 exponent of ``currency`` (2 when not listed)."""
    return ISO_EXPONENT.get(currency.upper(), 2)


def _to_decimal(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value and abs(value) != float("inf") else None
    if not isinstance(value, str):
        return None
    s = value.strip().replace(",", "")
    if not s or len(s) > _MAX_DIGITS:
        return None
    try:
        d = Decimal(s)
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


@lru_cache(maxsize=8192)
def _decimal_str_to_minor(value: str, currency: str) -> int | None:
    d = _to_decimal(value)
    if d is None or d < 0:
        return None
    return int((d.scaleb(exponent(currency))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def clear_caches() -> None:
    """Forget the memoized decimal-string conversions."""
    _decimal_str_to_minor.cache_clear()


def decimal_to_minor(value: object, currency: str) -> int | None:
    """A decimal amount ("290.00") → minor units of ``currency`` (29000); None when unparseable/negative."""
    if isinstance(value, str) and len(value) <= _MAX_DIGITS:
        return _decimal_str_to_minor(value, currency)
    d = _to_decimal(value)
    if d is None or d < 0:
        return None
    return int((d.scaleb(exponent(currency))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def rescale_minor(value: object, shop_minor_unit: object, currency: str) -> int | None:
    """A WooCommerce minor-unit amount written with the shop's ``currency_minor_unit`` → ISO minor units."""
    d = _to_decimal(value)
    if d is None or d < 0:
        return None
    mu = shop_minor_unit if isinstance(shop_minor_unit, int) and not isinstance(shop_minor_unit, bool) else None
    if mu is None and isinstance(shop_minor_unit, str) and shop_minor_unit.strip().isdigit():
        mu = int(shop_minor_unit.strip())
    if mu is None or not 0 <= mu <= 6:
        mu = exponent(currency)
    shift = exponent(currency) - mu
    return int(d.scaleb(shift).quantize(Decimal(1), rounding=ROUND_HALF_UP))
