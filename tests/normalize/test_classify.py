"""is_coffee on the hard cases of the issue: chocolate, cacao, drip bags, subscriptions, equipment."""

from __future__ import annotations

import pytest

from ._helpers import norm, shopify, shopify_variant


@pytest.mark.parametrize(
    ("title", "body", "product_type", "options", "expected"),
    [
        ("French Press 600 ml", "Brews up to 4 cups.", "Manual Brewing", [("Size", ["600ml"])], False),
        ("Cold Brew Chocolate Tart Bar", "A bar with coffee.", "", [], False),
        (
            "Carbonic Macerated Cacao Chocolate Bar 70%",
            "Single-origin cacao, carbonic macerated.",
            "",
            [],
            False,
        ),
        ("Coffee Drip Bags – Pack of 10", "Ten drip bags of our house blend.", "", [], True),
        (
            "Baarbara Estate Subscription",
            "",
            "Subscription",
            [("Installments", ["3"]), ("Size", ["250g"])],
            True,
        ),
        ("Roastery Tour | Bangalore", "Join us.", "Training", [("City", ["Bangalore"])], False),
        ("Gift Card", "", "", [], False),
        ("Kadamb Gift Box", "Includes a mug, cookies and drip bags.", "Gifting", [], False),
        (
            "Single Origin Trio Gift Box",
            "Three 100 g packs: Coorg Natural, Araku Honey.",
            "Gifting",
            [],
            True,
        ),
        ("Cold Brew Coffee Can 250ml", "Ready to drink.", "", [], False),
        (
            "Dawn Cold Brew Blend",
            "Whole beans for cold brew.",
            "Arabica Blends",
            [("Size", ["200 g"]), ("Grind Size", ["Whole Beans"])],
            True,
        ),
        ("Timemore C2 Manual Grinder", "", "equipments", [("Color", ["Black"])], False),
        ("Meghmalhar Gift Hamper", "Coffee, cookies and a French press.", "Gifting", [], False),
    ],
)
def test_is_coffee(
    title: str, body: str, product_type: str, options: list[tuple[str, list[str]]], expected: bool
) -> None:
    variants = [shopify_variant(1, *(vals[0] for _n, vals in options))] if options else None
    raw = shopify(
        title=title,
        body=f"<p>{body}</p>",
        product_type=product_type,
        options=options or None,
        variants=variants,
    )
    res = norm(raw)
    assert res.product.is_coffee is expected
    if not expected:
        p = res.product
        assert (p.roast_level, p.process, p.varieties, p.tasting_notes) == (None, None, [], [])
