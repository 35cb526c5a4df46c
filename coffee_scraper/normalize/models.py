"""The normalizer's output contract (``../shared/reference/normalized-product.md``) as pydantic models.

These field names and enum values are public and fixed. Evidence and review flags travel beside the
record (``NormalizeResult``), never inside the contract record itself.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Platform = Literal["shopify", "woocommerce"]
RoastLevel = Literal["light", "light_medium", "medium", "medium_dark", "dark"]
Process = Literal[
    "washed",
    "natural",
    "honey",
    "pulped_natural",
    "monsooned",
    "wet_hulled",
    "anaerobic",
    "carbonic_maceration",
    "double_fermented",
    "experimental",
    "other",
]
Species = Literal["arabica", "robusta", "liberica", "excelsa", "blend"]
Grind = Literal[
    "whole",
    "espresso",
    "moka_pot",
    "aeropress",
    "pour_over",
    "french_press",
    "south_indian_filter",
    "channi",
    "turkish",
    "cold_brew",
    "drip",
    "filter",
    "omni",
    "other",
]

ROAST_LEVELS: tuple[str, ...] = RoastLevel.__args__  # type: ignore[attr-defined]
PROCESSES: tuple[str, ...] = Process.__args__  # type: ignore[attr-defined]
SPECIES: tuple[str, ...] = Species.__args__  # type: ignore[attr-defined]
GRINDS: tuple[str, ...] = Grind.__args__  # type: ignore[attr-defined]


class Altitude(BaseModel):
    model_config = ConfigDict(frozen=True)
    min: int
    max: int


class NormalizedVariant(BaseModel):
    platform_variant_id: str
    title: str
    weight_g: int | None = None
    pack_count: int = 1
    grind: Grind | None = None
    price_minor: int
    compare_at_minor: int | None = None
    currency: str
    in_stock: bool


class NormalizedProduct(BaseModel):
    platform: Platform
    platform_product_id: str
    title: str
    is_coffee: bool
    name_clean: str
    roast_level: RoastLevel | None = None
    process: Process | None = None
    species: Species | None = None
    chicory_pct: int | None = None
    country: str | None = None
    region: str | None = None
    estate: str | None = None
    altitude_m: Altitude | None = None
    varieties: list[str] = Field(default_factory=list)
    tasting_notes: list[str] = Field(default_factory=list)
    decaf: bool = False
    variants: list[NormalizedVariant] = Field(default_factory=list)


class Evidence(BaseModel):
    """Why an attribute was filled: which input field, and the text that matched."""

    model_config = ConfigDict(frozen=True)
    attribute: str
    source: str  # e.g. "title", "tags", "body_html", "product_type", "options", "variant_title"
    text: str


class NormalizeResult(BaseModel):
    """A normalized record with its evidence and review flags (e.g. ``conflict:roast_level``)."""

    product: NormalizedProduct
    evidence: list[Evidence] = Field(default_factory=list)
    review_flags: list[str] = Field(default_factory=list)


_M = TypeVar("_M", bound=BaseModel)


def construct(cls: type[_M], values: dict[str, Any], _set: Any = object.__setattr__) -> _M:
    """``cls.model_construct(**values)`` for values holding every field, without its per-call overhead.

    Only for values the normalizer built itself, already of the right types (nothing is validated);
    ``values`` becomes the instance ``__dict__``, so its key order is the field order of the output.
    The models here allow no extra fields and have no private attributes: both slots are None, as
    model_construct leaves them.
    """
    m = cls.__new__(cls)
    _set(m, "__dict__", values)
    _set(m, "__pydantic_fields_set__", set(values))
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m


def fast_evidence(attribute: str, source: str, text: str) -> Evidence:
    """``Evidence(attribute=..., source=..., text=...)`` for three ``str`` arguments, without validation."""
    return construct(Evidence, {"attribute": attribute, "source": source, "text": text})
