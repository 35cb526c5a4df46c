"""Deterministic synthetic catalogs for the demo shops: Shopify ``products.json`` items and WooCommerce
Store API products in their real shapes, generated from a seeded ``random.Random`` (no network, no fixtures).

Not here: serving them over HTTP (see ``coffee_scraper.demo.server``) or parsing/normalising them.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

__all__ = [
    "PLACEHOLDER_ORIGIN",
    "ProductFacts",
    "make_shopify_catalog",
    "make_shopify_products",
    "make_woocommerce_catalog",
    "make_woocommerce_products",
    "mutate_prices",
    "remove_products",
]

IST = timezone(timedelta(hours=5, minutes=30))
_EPOCH = datetime(2024, 1, 8, 10, 0, 0, tzinfo=IST)
DEFAULT_SHOPIFY_ID_BASE = 7_300_000_000_000
DEFAULT_WOO_ID_BASE = 1_000
PLACEHOLDER_ORIGIN = "https://demo-roaster.invalid"  # the demo server rewrites it to the shop's own origin
NON_COFFEE_SHARE = 0.15


# --------------------------------------------------------------------------------------------------
# Ground truth (what a perfect normaliser would extract), kept beside the products, never inside them.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductFacts:
    """What the generator meant a product to be; tests compare the normaliser's output with it."""

    product_id: int
    is_coffee: bool
    kind: str  # "coffee", "french_press", "mug", "workshop", "gift_hamper", "grinder", "dripper"
    name: str
    region: str | None = None
    state: str | None = None
    estate: str | None = None
    process: str | None = None  # washed | natural | honey | anaerobic | monsooned
    roast: str | None = None  # light | medium-light | medium | medium-dark | dark
    species: str | None = None  # arabica | robusta | blend
    varieties: tuple[str, ...] = ()
    altitude_m: tuple[int, int] | None = None  # metres above sea level, low/high (equal for one figure)
    tasting_notes: tuple[str, ...] = ()
    net_weights_g: tuple[int, ...] = field(default_factory=tuple)  # distinct pack sizes offered


# --------------------------------------------------------------------------------------------------
# Vocabulary (invented estates; real Indian regions, processes, varieties)
# --------------------------------------------------------------------------------------------------

_REGIONS: list[tuple[str, str]] = [
    ("Chikmagalur", "Karnataka"),
    ("Coorg", "Karnataka"),
    ("Baba Budangiri", "Karnataka"),
    ("Biligiri Rangana Hills", "Karnataka"),
    ("Araku Valley", "Andhra Pradesh"),
    ("Nilgiris", "Tamil Nadu"),
    ("Shevaroy Hills", "Tamil Nadu"),
    ("Pulney Hills", "Tamil Nadu"),
    ("Wayanad", "Kerala"),
    ("Nelliampathy", "Kerala"),
    ("Koraput", "Odisha"),
]
_ESTATE_WORDS_A = [
    "Kalasa",
    "Mullayana",
    "Hosagadde",
    "Bettadamane",
    "Sirimane",
    "Kadamane",
    "Thogarihunkal",
    "Devarakadu",
    "Mallige",
    "Hulikere",
    "Neelakurinji",
    "Anegundi",
    "Kaveri Kodi",
    "Gowrigadde",
]
_ESTATE_WORDS_B = ["Estate", "Estate", "Estate", "Farms", "Plantation", "Hills Estate"]
_BLEND_NAMES = [
    "Monsoon Morning",
    "Filter Kaapi House",
    "Malnad Dawn",
    "Western Ghats",
    "Vintage Temple",
    "Mysore Nuggets",
    "Ghat Road",
    "Kaapi Royale",
    "Mountain Mist",
    "Harvest Moon",
]
_PROCESSES: list[tuple[str, str]] = [  # (fact value, label used in names and text)
    ("washed", "Washed"),
    ("natural", "Natural"),
    ("honey", "Honey"),
    ("anaerobic", "Anaerobic Natural"),
    ("monsooned", "Monsooned"),
]
_ROASTS = ["light", "medium-light", "medium", "medium-dark", "dark"]
_ARABICA_VARIETIES = ["SLN 795", "SLN 9", "Chandragiri", "Catuai", "Catimor", "Kent", "Selection 5B", "Gesha"]
_ROBUSTA_VARIETIES = ["CxR", "SLN 274", "Peridenia"]
_NOTES = [
    "Dark Chocolate",
    "Jaggery",
    "Orange Zest",
    "Cocoa",
    "Caramel",
    "Hazelnut",
    "Red Apple",
    "Plum",
    "Black Tea",
    "Brown Sugar",
    "Cardamom",
    "Tamarind",
    "Honey",
    "Raisin",
    "Jackfruit",
    "Toffee",
    "Almond",
    "Stone Fruit",
    "Blackcurrant",
    "Malt",
    "Spice",
    "Cedar",
    "Mango",
    "Lemongrass",
]
_GRINDS = [
    "Whole Bean",
    "French Press",
    "Espresso",
    "South Indian Filter",
    "Pour Over",
    "Moka Pot",
    "Aeropress",
    "Cold Brew",
]
_SIZES_G = [250, 500, 1000]
_NOISE_TAGS = ["TAX_5", "not_express", "best-seller", "CRP", "coffeeonly", "limited", "seasonal"]


def _size_label(grams: int, style: int) -> str:
    if grams >= 1000 and grams % 1000 == 0:
        return f"{grams // 1000}kg"
    return (f"{grams}g", f"{grams}gms", f"{grams} g")[style % 3]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def _rupees(amount: int) -> str:
    return f"{amount}.00"


# --------------------------------------------------------------------------------------------------
# Product specs: platform-neutral description of one product, rendered per platform below.
# --------------------------------------------------------------------------------------------------


@dataclass
class _Spec:
    facts: ProductFacts
    title: str
    body_html: str
    short_html: str
    tags: list[str]
    product_type: str
    category: str
    sizes_g: list[int]
    grinds: list[str]
    base_price_250: int  # rupees for 250 g (or the item price for non-coffee)
    plain_options: list[tuple[str, list[str]]]  # non-coffee option (name, values), else empty
    created: datetime
    updated: datetime
    available: bool
    on_sale: bool


def _altitude(rng: random.Random) -> tuple[int, int]:
    low = rng.randrange(900, 1500, 50)
    return (low, low + rng.choice([0, 100, 150, 200, 300]))


def _altitude_line(alt: tuple[int, int], rng: random.Random) -> tuple[str, tuple[int, int]]:
    """One altitude sentence in a style real roasters use, and the metres it states."""
    low, high = alt
    style = rng.randrange(4)
    if style == 0:
        if high == low:
            return f"Altitude: {low:,} MASL", (low, low)
        return f"Altitude: {low:,} – {high:,} MASL", (low, high)
    if style == 1:
        low_ft, high_ft = int(round(low * 3.281, -2)), int(round(high * 3.281, -2))
        line = f"Elevation: {low_ft} Ft &#8211; {high_ft} Ft ASL"
        return line, (round(low_ft / 3.281), round(high_ft / 3.281))
    if style == 2:
        return f"grown at {low} masl", (low, low)
    return f"at an elevation of {high} MASL", (high, high)


def _coffee_spec(rng: random.Random, pid: int, created: datetime) -> _Spec:
    region, state = rng.choice(_REGIONS)
    process, process_label = rng.choice(_PROCESSES)
    if process == "monsooned":
        region, state = rng.choice([("Coorg", "Karnataka"), ("Chikmagalur", "Karnataka")])
    species = rng.choices(["arabica", "robusta", "blend"], weights=[70, 15, 15])[0]
    roast = rng.choice(_ROASTS) if species == "arabica" else rng.choice(["medium-dark", "dark", "medium"])
    if species == "arabica":
        varieties = tuple(rng.sample(_ARABICA_VARIETIES, rng.choice([1, 1, 2])))
    elif species == "robusta":
        varieties = (rng.choice(_ROBUSTA_VARIETIES),)
    else:
        varieties = (rng.choice(_ARABICA_VARIETIES), rng.choice(_ROBUSTA_VARIETIES))
    estate: str | None = None
    style = rng.randrange(5)
    if species == "blend":
        title = f"{rng.choice(_BLEND_NAMES)} Blend"
    elif process == "monsooned":
        title = rng.choice(["Monsooned Malabar AA", "Monsooned Malabar Robusta", "Malabar Monsoon Reserve"])
    elif style <= 1:
        estate = f"{rng.choice(_ESTATE_WORDS_A)} {rng.choice(_ESTATE_WORDS_B)}"
        title = f"{estate} {process_label}" if style == 0 else estate
    elif style == 2:
        title = f"{region} {process_label} {rng.choice(['AA', 'AB', 'PB', 'Peaberry', 'Plantation A'])}"
    elif style == 3:
        estate = f"{rng.choice(_ESTATE_WORDS_A)} {rng.choice(_ESTATE_WORDS_B)}"
        title = f"{estate} - {varieties[0]} {process_label}"
    else:
        title = f"{region} {rng.choice(['Single Origin', 'Reserve', 'Micro Lot'])}"
    notes = tuple(rng.sample(_NOTES, rng.choice([2, 3, 3, 4])))
    altitude = _altitude(rng) if rng.random() < 0.55 else None
    sizes = sorted(rng.sample(_SIZES_G, rng.choice([1, 2, 3, 3])))
    if rng.random() < 0.1:
        sizes = [rng.choice([100, 200])]
    grinds = ["Whole Bean", *rng.sample(_GRINDS[1:], rng.choice([0, 2, 3, 5]))]
    roast_words = roast.replace("-", " ")
    label = rng.choice(["<strong>{k}</strong>: {v}", "{k} : {v}", "{k}: {v}"])
    facts_lines = [label.format(k="Region", v=f"{region}, {state}")]
    if estate:
        facts_lines.append(label.format(k="Estate", v=estate))
    facts_lines += [
        label.format(k="Process", v=process_label),
        label.format(k="Roast", v=f"{roast_words.title()} Roast"),
        label.format(
            k="Variety" if species != "robusta" else "Species",
            v=", ".join(varieties) if species != "robusta" else "Robusta",
        ),
        label.format(k="Tasting Notes", v=", ".join(notes)),
    ]
    if len(sizes) == 1:
        facts_lines.append(label.format(k="Net Weight", v=_size_label(sizes[0], rng.randrange(3))))
    if altitude is not None:  # ground truth is only what the page says
        line, altitude = _altitude_line(altitude, rng)
        facts_lines.append(line)
    intro = rng.choice(
        [
            f"From the misty slopes of <strong>{region}</strong>, this {process_label.lower()} "
            f"{'blend' if species == 'blend' else species.title()} is roasted to a <strong>{roast_words} "
            f"profile</strong>.",
            f"A {roast_words} roast from {region}, {state}: expect {', '.join(n.lower() for n in notes)}.",
            f"Grown under native shade in {region} and processed {process_label.lower()}, this coffee "
            f"shows {notes[0].lower()} up front and a lingering {notes[-1].lower()} finish.",
        ]
    )
    list_style = rng.randrange(3)
    if list_style == 0:
        facts_html = "<ul>" + "".join(f"<li>{line}</li>" for line in facts_lines) + "</ul>"
    elif list_style == 1:
        facts_html = "<p>" + "<br>\n".join(facts_lines) + "</p>"
    else:
        facts_html = "".join(f"<p>{line}</p>" for line in facts_lines)
    brew = rng.choice(
        [
            "pour over and Aeropress",
            "espresso and milk drinks",
            "South Indian filter",
            "French press and cold brew",
        ]
    )
    body_html = f"<p>{intro}</p>\n{facts_html}\n<p>Best enjoyed as {brew}.</p>"
    short_html = "<p>" + "<br />\n".join(facts_lines) + "</p>"
    tags = [f"{roast}-roast", process_label.split()[0]]
    tags += rng.sample(
        [
            "acidity-low",
            "acidity-medium",
            "acidity-medium-high",
            "bitterness-low",
            "bitterness-medium",
            "chocolatey",
            "fruity",
        ],
        2,
    )
    tags += rng.sample(_NOISE_TAGS, rng.choice([0, 1, 2]))
    tags.append(state)
    if rng.random() < 0.4:
        tags.append(rng.choice(["channi", "coffee filter", "French Press Grind", "pourover"]))
    product_type = rng.choice(["Single Estate Coffee", "Coffee", "Roasted Coffee", "Micro Lot"])
    if species == "blend":
        product_type = "Blend"
    category = (
        "House Blends"
        if species == "blend"
        else rng.choice(["Single Estate Coffees", "Speciality Coffees of India", "Our Coffees"])
    )
    base = rng.randrange(380, 1300, 10) if species != "robusta" else rng.randrange(300, 600, 10)
    updated = created + timedelta(days=rng.randrange(0, 120), minutes=rng.randrange(0, 1440))
    facts = ProductFacts(
        product_id=pid,
        is_coffee=True,
        kind="coffee",
        name=title,
        region=region,
        state=state,
        estate=estate,
        process=process,
        roast=roast,
        species=species,
        varieties=varieties,
        altitude_m=altitude,
        tasting_notes=notes,
        net_weights_g=tuple(sizes),
    )
    return _Spec(
        facts=facts,
        title=title,
        body_html=body_html,
        short_html=short_html,
        tags=tags,
        product_type=product_type,
        category=category,
        sizes_g=sizes,
        grinds=grinds,
        base_price_250=base,
        plain_options=[],
        created=created,
        updated=updated,
        available=rng.random() > 0.1,
        on_sale=rng.random() < 0.15,
    )


_NON_COFFEE: list[tuple[str, str, str, str, tuple[int, int]]] = [
    # kind, title template, product type, category, price range (rupees)
    ("french_press", "French Press {n} ml", "Manual Brewing", "Brewing Equipment", (1200, 2600)),
    ("mug", "Ceramic Mug - {c}", "Merchandise", "Merchandise", (450, 900)),
    ("workshop", "Home Brewing Workshop | {city}", "Training", "Workshops", (1500, 3500)),
    ("gift_hamper", "{f} Gift Hamper", "Gifting", "Gift Hampers", (2500, 6500)),
    ("grinder", "Hand Grinder {m}", "Equipment", "Brewing Equipment", (2800, 7000)),
    ("dripper", "V60 Style Ceramic Dripper", "Manual Brewing", "Brewing Equipment", (900, 1800)),
]


def _non_coffee_spec(rng: random.Random, pid: int, created: datetime, kind_index: int) -> _Spec:
    kind, template, ptype, category, (lo, hi) = _NON_COFFEE[kind_index % len(_NON_COFFEE)]
    city = rng.choice(["Bengaluru", "Mumbai", "Delhi", "Chennai", "Hyderabad"])
    title = template.format(
        n=rng.choice([350, 600, 1000]),
        c=rng.choice(["Terracotta", "Indigo", "Forest Green"]),
        city=city,
        f=rng.choice(["Diwali", "Monsoon", "Festive", "Thank You"]),
        m=rng.choice(["Pro", "Classic", "Mini"]),
    )
    options: list[tuple[str, list[str]]] = []
    if kind == "workshop":
        days = [f"{d.day} {d:%B %Y - %A}" for d in (created + timedelta(days=14), created + timedelta(days=28))]
        options = [("Date", [f"{city} - {d}" for d in days])]
    body = {
        "french_press": "<p>Borosilicate glass and a stainless steel plunger. Brews 4 cups.</p>"
        "<ul><li>Capacity: as named</li><li>Dishwasher safe</li></ul>",
        "mug": "<p>Hand-glazed stoneware mug, 300 ml. Microwave safe.</p>",
        "workshop": "<p>Two hours with our head roaster: cupping, pour over and espresso basics. "
        "Coffee and snacks included.</p>",
        "gift_hamper": "<p>This hamper includes:</p><ul><li>Two 250g packs of our medium roast coffee "
        "(French Press Grind)</li><li>A ceramic mug</li><li>Biscotti (6 pieces)</li></ul>",
        "grinder": "<p>Conical steel burrs, 30 g capacity, stepped from espresso to French press.</p>",
        "dripper": "<p>Cone dripper for size 02 filters. Pour over made simple.</p>",
    }[kind]
    updated = created + timedelta(days=rng.randrange(0, 60))
    return _Spec(
        facts=ProductFacts(product_id=pid, is_coffee=False, kind=kind, name=title),
        title=title,
        body_html=body,
        short_html=body,
        tags=rng.sample(["TAX_18", "not_express", "gifting", "equipment", "Event"], 2),
        product_type=ptype,
        category=category,
        sizes_g=[],
        grinds=[],
        base_price_250=rng.randrange(lo, hi, 50),
        plain_options=options,
        created=created,
        updated=updated,
        available=rng.random() > 0.15,
        on_sale=rng.random() < 0.1,
    )


def _specs(n: int, rng: random.Random, ids: Sequence[int]) -> list[_Spec]:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    n_other = round(n * NON_COFFEE_SHARE)
    other_slots = set(rng.sample(range(n), n_other)) if n_other else set()
    specs: list[_Spec] = []
    taken_titles: set[str] = set()
    created = _EPOCH + timedelta(days=rng.randrange(0, 200))
    for i in range(n):
        created += timedelta(days=rng.randrange(0, 6), hours=rng.randrange(0, 24), minutes=rng.randrange(60))
        if i in other_slots:
            spec = _non_coffee_spec(rng, ids[i], created, kind_index=len([s for s in specs if not s.facts.is_coffee]))
        else:
            spec = _coffee_spec(rng, ids[i], created)
        base_title = spec.title
        k = 2
        while spec.title in taken_titles:  # keep handles/slugs unique inside one shop
            spec.title = f"{base_title} Lot {k}"
            k += 1
        if spec.title != base_title:
            spec.facts = ProductFacts(**{**spec.facts.__dict__, "name": spec.title})
        taken_titles.add(spec.title)
        specs.append(spec)
    return specs


def _price_for(base_250: int, grams: int) -> int:
    if grams <= 0:
        return base_250
    raw = base_250 * grams / 250 * (0.92 if grams >= 1000 else 0.96 if grams >= 500 else 1.0)
    return int(round(raw / 10.0) * 10)


def _shipping_grams(net: int, rng: random.Random, flat: int | None) -> int:
    """Shipping weight as merchants set it: packaging added, a flat default, or 0; never the net weight."""
    if flat is not None:
        return flat if flat != net else flat + 50
    choice = rng.random()
    if choice < 0.15:
        return 0
    return net + rng.choice([30, 50, 80, 100])


# --------------------------------------------------------------------------------------------------
# Shopify
# --------------------------------------------------------------------------------------------------


def make_shopify_catalog(
    n: int,
    *,
    seed: int,
    id_base: int = DEFAULT_SHOPIFY_ID_BASE,
    vendor: str | None = None,
) -> tuple[list[dict[str, Any]], dict[int, ProductFacts]]:
    """``n`` Shopify ``products.json`` items plus the generator's ground truth, keyed by product id."""
    rng = random.Random(f"shopify:{seed}")
    vendor = vendor or rng.choice(["Malnad Kaapi Roasters", "Ghat Road Coffee Co.", "Estate Bean Works"])
    ids = [id_base + i * 1_000 + rng.randrange(1, 999) for i in range(n)]
    specs = _specs(n, rng, ids)
    variant_id = id_base * 6 + rng.randrange(1_000, 9_999)
    image_id = id_base * 4 + rng.randrange(1_000, 9_999)
    flat_grams = rng.choice([None, None, 500, 1000])
    size_name = rng.choice(["Size", "Weight"])
    grind_name = rng.choice(["Grind", "Grind Size", "Grind size"])
    products: list[dict[str, Any]] = []
    facts: dict[int, ProductFacts] = {}
    for spec in specs:
        pid = spec.facts.product_id
        handle = _slug(spec.title)
        created, updated = _iso(spec.created), _iso(spec.updated)
        published = _iso(spec.created + timedelta(minutes=rng.randrange(5, 600)))
        options: list[dict[str, Any]] = []
        combos: list[tuple[str, ...]] = []
        nets: list[int] = []
        size_style = rng.randrange(3)
        if spec.facts.is_coffee:
            size_labels = [_size_label(g, size_style) for g in spec.sizes_g]
            options.append({"name": size_name, "position": 1, "values": size_labels})
            if len(spec.grinds) > 1 or rng.random() < 0.5:
                options.append({"name": grind_name, "position": 2, "values": list(spec.grinds)})
                combos = [(s, g) for s in size_labels for g in spec.grinds]
                nets = [g for g in spec.sizes_g for _ in spec.grinds]
            else:
                combos = [(s,) for s in size_labels]
                nets = list(spec.sizes_g)
        elif spec.plain_options:
            name, values = spec.plain_options[0]
            options.append({"name": name, "position": 1, "values": values})
            combos = [(v,) for v in values]
            nets = [0] * len(values)
        else:
            options.append({"name": "Title", "position": 1, "values": ["Default Title"]})
            combos = [("Default Title",)]
            nets = [0]
        variants: list[dict[str, Any]] = []
        for pos, (combo, net) in enumerate(zip(combos, nets, strict=True), start=1):
            variant_id += rng.randrange(7, 4_000)
            price = _price_for(spec.base_price_250, net) if spec.facts.is_coffee else spec.base_price_250
            compare: str | None
            compare = _rupees(int(price * 1.2 // 10 * 10)) if spec.on_sale else rng.choice([None, None, _rupees(price)])
            grams = _shipping_grams(net, rng, flat_grams) if net else rng.choice([0, 0, 750, 1200])
            sku = None if rng.random() < 0.5 else f"{handle[:10].upper()}-{pos:02d}"
            variants.append(
                {
                    "id": variant_id,
                    "title": " / ".join(combo),
                    "option1": combo[0],
                    "option2": combo[1] if len(combo) > 1 else None,
                    "option3": combo[2] if len(combo) > 2 else None,
                    "sku": sku,
                    "requires_shipping": spec.facts.kind != "workshop",
                    "taxable": True,
                    "featured_image": None,
                    "available": spec.available and rng.random() > 0.08,
                    "price": _rupees(price),
                    "grams": grams,
                    "compare_at_price": compare,
                    "position": pos,
                    "product_id": pid,
                    "created_at": created,
                    "updated_at": updated,
                }
            )
        images: list[dict[str, Any]] = []
        for pos in range(1, rng.choice([1, 1, 2, 3]) + 1):
            image_id += rng.randrange(11, 5_000)
            images.append(
                {
                    "id": image_id,
                    "created_at": created,
                    "position": pos,
                    "updated_at": updated,
                    "product_id": pid,
                    "variant_ids": [],
                    "src": f"https://cdn.demo-shop.invalid/s/files/1/0000/0001/files/{handle}-{pos}.jpg"
                    f"?v={int(spec.updated.timestamp())}",
                    "width": 1200,
                    "height": 1200,
                }
            )
        products.append(
            {
                "id": pid,
                "title": spec.title,
                "handle": handle,
                "body_html": spec.body_html,
                "published_at": published,
                "created_at": created,
                "updated_at": updated,
                "vendor": vendor,
                "product_type": spec.product_type,
                "tags": sorted(set(spec.tags), key=str.lower),
                "variants": variants,
                "images": images,
                "options": options,
            }
        )
        facts[pid] = spec.facts
    return products, facts


def make_shopify_products(
    n: int,
    *,
    seed: int,
    id_base: int = DEFAULT_SHOPIFY_ID_BASE,
    vendor: str | None = None,
) -> list[dict[str, Any]]:
    """``n`` Shopify ``products.json`` items (``{"products": [...]}`` entries), same seed → same catalog."""
    return make_shopify_catalog(n, seed=seed, id_base=id_base, vendor=vendor)[0]


# --------------------------------------------------------------------------------------------------
# WooCommerce Store API
# --------------------------------------------------------------------------------------------------

_CURRENCY_SYMBOLS = {"INR": "₹", "USD": "$", "EUR": "€", "GBP": "£"}
_CURRENCY_ENTITIES = {"INR": "&#8377;", "USD": "&#36;", "EUR": "&euro;", "GBP": "&pound;"}


def _woo_amount(rupees: int, minor_unit: int) -> str:
    return str(rupees * 10**minor_unit)


def _price_html(amount_minor: str, minor_unit: int, currency: str) -> str:
    value = Decimal(amount_minor).scaleb(-minor_unit)
    text = f"{value:,.{minor_unit}f}"
    sym = _CURRENCY_ENTITIES.get(currency, currency)
    return (
        '<span class="woocommerce-Price-amount amount"><bdi><span class="woocommerce-Price-currencySymbol">'
        f"{sym}</span>{text}</bdi></span>"
    )


def _woo_prices(
    price: str, regular: str, sale: str, price_range: dict[str, str] | None, currency: str, minor_unit: int
) -> dict[str, Any]:
    symbol = _CURRENCY_SYMBOLS.get(currency, currency)
    return {
        "currency_code": currency,
        "currency_symbol": symbol,
        "currency_minor_unit": minor_unit,
        "currency_decimal_separator": ".",
        "currency_thousand_separator": ",",
        "currency_prefix": symbol,
        "currency_suffix": "",
        "price": price,
        "regular_price": regular,
        "sale_price": sale,
        "price_range": price_range,
    }


def make_woocommerce_catalog(
    n: int,
    *,
    seed: int,
    id_base: int = DEFAULT_WOO_ID_BASE,
    base_url: str = PLACEHOLDER_ORIGIN,
    currency: str = "INR",
    minor_unit: int = 2,
) -> tuple[list[dict[str, Any]], dict[int, ProductFacts]]:
    """``n`` WooCommerce Store API products plus the generator's ground truth, keyed by product id."""
    rng = random.Random(f"woocommerce:{seed}")
    ids = [id_base + i * 40 + rng.randrange(0, 30) for i in range(n)]
    specs = _specs(n, rng, ids)
    specs.reverse()  # the Store API lists newest first; newer products have higher ids
    next_variation_id = id_base + n * 40 + 100
    term_ids = {g: 40 + i for i, g in enumerate(_GRINDS)}
    size_term_ids = {g: 80 + i for i, g in enumerate([100, 200, *_SIZES_G])}
    category_ids: dict[str, int] = {}
    tag_ids: dict[str, int] = {}
    image_id = id_base * 3
    base_url = base_url.rstrip("/")
    products: list[dict[str, Any]] = []
    facts: dict[int, ProductFacts] = {}
    for spec in specs:
        pid = spec.facts.product_id
        name = spec.title
        if " - " in name and rng.random() < 0.7:
            name = name.replace(" - ", " &#8211; ")
        elif rng.random() < 0.15:
            name = name.upper()
        slug = _slug(spec.title)
        permalink = f"{base_url}/product/{slug}/"
        attributes: list[dict[str, Any]] = []
        variations: list[dict[str, Any]] = []
        amounts: list[int] = []
        if spec.facts.is_coffee and (len(spec.sizes_g) > 1 or len(spec.grinds) > 1):
            product_type: Literal["simple", "variable"] = "variable"
            attr_rows: list[tuple[str, list[tuple[int, str, str]], list[int]]] = []
            if len(spec.sizes_g) > 1:
                terms = [(size_term_ids[g], _size_label(g, 0), _slug(_size_label(g, 0))) for g in spec.sizes_g]
                attr_rows.append(("Weight", terms, list(spec.sizes_g)))
            if len(spec.grinds) > 1:
                terms = [(term_ids[g], g, _slug(g)) for g in spec.grinds]
                attr_rows.append(("Grind Size", terms, [0] * len(spec.grinds)))
            for attr_index, (attr_name, terms, _) in enumerate(attr_rows, start=1):
                attributes.append(
                    {
                        "id": attr_index,
                        "name": attr_name,
                        "taxonomy": f"pa_{_slug(attr_name)}",
                        "has_variations": True,
                        "terms": [{"id": tid, "name": tname, "slug": tslug} for tid, tname, tslug in terms],
                    }
                )
            combos: list[list[tuple[str, str, int]]] = [[]]
            for attr_name, terms, weights in attr_rows:
                combos = [[*c, (attr_name, t[2], w)] for c in combos for t, w in zip(terms, weights, strict=True)]
            for combo in combos:
                variations.append(
                    {
                        "id": next_variation_id,
                        "attributes": [{"name": a, "value": v} for a, v, _ in combo],
                    }
                )
                next_variation_id += 1
                grams = max((w for _, _, w in combo), default=0) or spec.sizes_g[0]
                amounts.append(_price_for(spec.base_price_250, grams))
        else:
            product_type = "simple"
            grams = spec.sizes_g[0] if spec.sizes_g else 0
            amounts.append(_price_for(spec.base_price_250, grams) if spec.facts.is_coffee else spec.base_price_250)
            if spec.facts.is_coffee and spec.sizes_g:
                attributes.append(
                    {
                        "id": 0,
                        "name": "Weight",
                        "taxonomy": None,
                        "has_variations": False,
                        "terms": [{"id": 0, "name": _size_label(grams, 1), "slug": _size_label(grams, 1)}],
                    }
                )
        low, high = min(amounts), max(amounts)
        hidden_price = product_type == "simple" and spec.facts.is_coffee and rng.random() < 0.05
        regular = _woo_amount(low, minor_unit)
        if hidden_price:
            price = regular = sale = "0"
        elif spec.on_sale:
            sale_rupees = int(low * 0.85 // 10 * 10)
            price = sale = _woo_amount(sale_rupees, minor_unit)
        else:
            price = sale = regular
        price_range = None
        if low != high and not hidden_price:
            price_range = {"min_amount": price, "max_amount": _woo_amount(high, minor_unit)}
        if price_range:
            price_html = (
                _price_html(price_range["min_amount"], minor_unit, currency)
                + " &ndash; "
                + _price_html(price_range["max_amount"], minor_unit, currency)
            )
        elif hidden_price:
            price_html = ""
        else:
            price_html = _price_html(price, minor_unit, currency)
            if spec.on_sale:
                price_html = f"<del>{_price_html(regular, minor_unit, currency)}</del> <ins>{price_html}</ins>"
        cat_name = spec.category.upper() if rng.random() < 0.5 else spec.category
        cat_id = category_ids.setdefault(cat_name, 60 + len(category_ids))
        tags = []
        for tag in sorted(set(spec.tags))[:3]:
            tid = tag_ids.setdefault(tag, 200 + len(tag_ids))
            tags.append({"id": tid, "name": tag, "slug": _slug(tag), "link": f"{base_url}/product-tag/{_slug(tag)}/"})
        image_id += rng.randrange(3, 90)
        image_src = f"{base_url}/wp-content/uploads/{spec.created.year}/{spec.created.month:02d}/{slug}.jpg"
        in_stock = spec.available
        description = spec.body_html if rng.random() < 0.6 else ""
        short = spec.short_html if description == "" or rng.random() < 0.5 else ""
        products.append(
            {
                "id": pid,
                "name": name,
                "slug": slug,
                "parent": 0,
                "type": product_type,
                "variation": "",
                "permalink": permalink,
                "sku": "" if rng.random() < 0.6 else f"DEMO-{pid}",
                "short_description": short,
                "description": description,
                "on_sale": spec.on_sale and not hidden_price,
                "prices": _woo_prices(price, regular, sale, price_range, currency, minor_unit),
                "price_html": price_html,
                "average_rating": rng.choice(["0", "0", "4.50", "5.00"]),
                "review_count": rng.choice([0, 0, 0, 2, 7]),
                "images": [
                    {
                        "id": image_id,
                        "src": image_src,
                        "thumbnail": image_src.replace(".jpg", "-300x300.jpg"),
                        "srcset": f"{image_src} 800w, {image_src.replace('.jpg', '-300x300.jpg')} 300w",
                        "sizes": "(max-width: 800px) 100vw, 800px",
                        "name": slug,
                        "alt": "",
                    }
                ],
                "categories": [
                    {
                        "id": cat_id,
                        "name": cat_name,
                        "slug": _slug(cat_name),
                        "link": f"{base_url}/product-category/{_slug(cat_name)}/",
                    }
                ],
                "tags": tags,
                "attributes": attributes,
                "variations": variations,
                "has_options": product_type == "variable",
                "is_purchasable": not hidden_price,
                "is_in_stock": in_stock,
                "is_on_backorder": False,
                "low_stock_remaining": rng.choice([None, None, None, 3]) if in_stock else None,
                "sold_individually": False,
                "quantity_limit": 99,
                "add_to_cart": {
                    "text": "Select options" if product_type == "variable" else "Add to cart",
                    "description": f"{'Select options for' if product_type == 'variable' else 'Add'} "
                    f"&ldquo;{name}&rdquo;{'' if product_type == 'variable' else ' to your cart'}",
                    "url": permalink if product_type == "variable" else f"?add-to-cart={pid}",
                },
            }
        )
        facts[pid] = spec.facts
    return products, facts


def make_woocommerce_products(
    n: int,
    *,
    seed: int,
    id_base: int = DEFAULT_WOO_ID_BASE,
    base_url: str = PLACEHOLDER_ORIGIN,
    currency: str = "INR",
    minor_unit: int = 2,
) -> list[dict[str, Any]]:
    """``n`` WooCommerce Store API products (newest first, as the API lists them), same seed → same list."""
    return make_woocommerce_catalog(
        n, seed=seed, id_base=id_base, base_url=base_url, currency=currency, minor_unit=minor_unit
    )[0]


# --------------------------------------------------------------------------------------------------
# Changing a catalog between runs
# --------------------------------------------------------------------------------------------------


def _bump(amount: Decimal, rng: random.Random) -> Decimal:
    factor = Decimal(rng.choice([-15, -10, -5, 5, 8, 10, 12, 20])) / 100
    new = (amount * (1 + factor) / 10).quantize(Decimal(1)) * 10
    return new if new != amount else amount + 10


def mutate_prices(products: Sequence[dict[str, Any]], *, fraction: float, seed: int) -> list[dict[str, Any]]:
    """A deep copy of ``products`` where ``round(fraction * len)`` products (at least one when
    ``fraction > 0``) have new prices and a later ``updated_at``. Works on Shopify and Woo items alike."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    out = copy.deepcopy(list(products))
    if not out or fraction == 0:
        return out
    rng = random.Random(f"mutate:{seed}")
    count = max(1, round(fraction * len(out)))
    for index in sorted(rng.sample(range(len(out)), count)):
        product = out[index]
        if "variants" in product:  # Shopify
            stamp = _later_stamp(product.get("updated_at"))
            for variant in product["variants"]:
                old = Decimal(variant["price"])
                new = _bump(old, rng)
                variant["price"] = f"{new:.2f}"
                if variant.get("compare_at_price") is not None and Decimal(variant["compare_at_price"]) < new:
                    variant["compare_at_price"] = None
                variant["updated_at"] = stamp
            product["updated_at"] = stamp
        elif "prices" in product:  # WooCommerce Store API
            prices = product["prices"]
            unit = int(prices.get("currency_minor_unit", 2))
            scale = Decimal(10) ** unit
            old = Decimal(prices["regular_price"] or "0") / scale
            if old == 0:
                old = Decimal(500)
            new = _bump(old, rng)
            new_minor = str(int(new * scale))
            prices["price"] = prices["regular_price"] = prices["sale_price"] = new_minor
            product["on_sale"] = False
            if prices.get("price_range"):
                span = Decimal(prices["price_range"]["max_amount"]) - Decimal(prices["price_range"]["min_amount"])
                prices["price_range"] = {"min_amount": new_minor, "max_amount": str(int(new * scale + span))}
                product["price_html"] = (
                    _price_html(new_minor, unit, prices["currency_code"])
                    + " &ndash; "
                    + _price_html(prices["price_range"]["max_amount"], unit, prices["currency_code"])
                )
            else:
                product["price_html"] = _price_html(new_minor, unit, prices["currency_code"])
        else:
            raise ValueError(f"product {product.get('id')!r} is neither a Shopify nor a WooCommerce product")
    return out


def _later_stamp(updated_at: object) -> str:
    try:
        base = datetime.fromisoformat(str(updated_at))
    except ValueError:
        base = _EPOCH
    return _iso(base + timedelta(days=1, minutes=7))


def remove_products(products: Sequence[dict[str, Any]], ids: Iterable[int]) -> list[dict[str, Any]]:
    """A new list without the products whose ``id`` is in ``ids`` (the others are the same objects)."""
    drop = set(ids)
    return [p for p in products if p.get("id") not in drop]
