"""Validation of raw platform products before normalization (pydantic models of the fields we rely on).

A product that fails is quarantined with the reason returned here; unknown extra fields are allowed.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator


def _id(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise ValueError("must be a number or a non-empty string")
    text = str(value).strip()
    if not text or len(text) > 64:
        raise ValueError("must be a number or a non-empty string of at most 64 characters")
    return text


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class ShopifyVariantIn(_Lenient):
    id: str
    title: str | None = None
    price: str
    compare_at_price: str | None = None
    available: bool | None = None

    _v_id = field_validator("id", mode="before")(_id)

    @field_validator("price", mode="before")
    @classmethod
    def _price(cls, value: Any) -> str:
        if isinstance(value, bool) or value is None:
            raise ValueError("price is missing")
        text = str(value).strip()
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"price {text!r} is not a decimal number") from None
        if not amount.is_finite() or amount < 0:
            raise ValueError(f"price {text!r} is negative or not finite")
        return text


class ShopifyProductIn(_Lenient):
    id: str
    title: str
    variants: list[ShopifyVariantIn]

    _v_id = field_validator("id", mode="before")(_id)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("title is blank")
        return value

    @field_validator("variants")
    @classmethod
    def _variants(cls, value: list[ShopifyVariantIn]) -> list[ShopifyVariantIn]:
        if not value:
            raise ValueError("product has no variants (Shopify always lists at least one)")
        return value


class WooPricesIn(_Lenient):
    currency_code: str
    currency_minor_unit: int = 2
    price: str

    @field_validator("price", mode="before")
    @classmethod
    def _price(cls, value: Any) -> str:
        text = str(value).strip() if value is not None and not isinstance(value, bool) else ""
        if not text.isdigit():
            raise ValueError(f"price {value!r} is not a non-negative integer string in minor units")
        return text

    @field_validator("currency_code")
    @classmethod
    def _currency(cls, value: str) -> str:
        if len(value.strip()) != 3:
            raise ValueError(f"currency_code {value!r} is not an ISO 4217 code")
        return value.strip().upper()


class WooVariationIn(_Lenient):
    id: str

    _v_id = field_validator("id", mode="before")(_id)


class WooProductIn(_Lenient):
    id: str
    name: str
    prices: WooPricesIn
    variations: list[WooVariationIn] = []

    _v_id = field_validator("id", mode="before")(_id)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name is blank")
        return value


def product_id_of(raw: Any) -> str | None:
    """The product id if one can be read, for quarantine records."""
    if isinstance(raw, dict) and raw.get("id") is not None:
        return str(raw["id"])[:64]
    return None


def validate_product(raw: Any, platform: str) -> str | None:
    """None when the product is usable, else a one-line reason naming the bad fields."""
    if not isinstance(raw, dict):
        return f"product is a JSON {type(raw).__name__}, expected an object"
    model = ShopifyProductIn if platform == "shopify" else WooProductIn
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]]
        more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        return "; ".join(problems) + more
    return None
