"""Per-field unit tests of product attributes, with phrases from coffee-vocabulary.md and the issue."""

from __future__ import annotations

import pytest

from ._helpers import coffee


@pytest.mark.parametrize(
    ("body", "tags", "expected"),
    [
        ("", ["medium-roast"], "medium"),
        ("", ["medium-dark-roast"], "medium_dark"),
        ("", ["light-roast"], "light"),
        ("<p>Roast Profile : Dark Roast</p>", [], "dark"),
        ("<p>Roast Profile : Full City Roast</p>", [], "medium_dark"),
        ("<p>Roast: City+.</p>", [], "medium"),
        ("<p>Roast: Half City.</p>", [], "light"),
        ("<p>Our Vienna roast is the darkest.</p>", [], "dark"),
        ("<p>Roast Profile : City Roast</p>", [], None),
        ("<p>Roasted to a light-medium profile.</p>", [], "light_medium"),
        ("<p>We roasted it light to accentuate citrus.</p>", [], "light"),
        ("<p>A great filter roast. Espresso roast too.</p>", [], None),
        ("<p>Notes of dark chocolate and roasted almond.</p>", [], None),
        # comparisons and lists are not statements of this coffee's level
        (
            "<p>This dark roast blend is darker than a medium roast but not as intense as a Vienna roast.",
            [],
            "dark",
        ),
        ("<p>Roasted light-medium. You can also enjoy it as a light roast espresso.</p>", [], "light_medium"),
        ("<p>A dark, Italian-style roast.</p>", [], "dark"),
    ],
)
def test_roast_level(body: str, tags: list[str], expected: str | None) -> None:
    assert coffee(body, tags=tags).product.roast_level == expected


def test_conflicting_roast_levels_give_null_and_flag() -> None:
    res = coffee("<p>A light roast.</p>", tags=["dark-roast"])
    assert res.product.roast_level is None
    assert "conflict:roast_level" in res.review_flags


@pytest.mark.parametrize(
    ("title", "body", "tags", "expected"),
    [
        ("Monsooned Malabar AA", "", [], "monsooned"),
        ("Monsoon Malabar AA", "", [], "monsooned"),
        ("Estate X", "<p>An anaerobic natural lot.</p>", [], "anaerobic"),
        ("Gungegiri Honey Sun Dried", "", [], "honey"),
        ("Zoya Yeast Anaerobic Naturals", "", [], "experimental"),
        ("Harley Whiskey Barrel Aged", "<p>washed coffees aged in whiskey barrels</p>", [], "experimental"),
        ("Attikan Koji Washed", "", [], "experimental"),
        ("Kerehaklu CM Natural", "", [], "carbonic_maceration"),
        ("Kenya AA", "<p>double fermentation, Kenyan style</p>", [], "double_fermented"),
        ("Robusta Parchment AB", "", [], "washed"),
        ("Arabica Cherry AB", "", [], "natural"),
        ("Estate Y", "", ["Natural"], "natural"),
        ("Sumatra Aceh", "<p>Giling basah (wet-hulled).</p>", [], "wet_hulled"),
        ("Estate Z", "<p>A natural and healthy ecosystem.</p>", [], None),
        ("Equinox", "<p>A blend of 3 coffees: washed, honey and monsooned.</p>", [], None),
    ],
)
def test_process(title: str, body: str, tags: list[str], expected: str | None) -> None:
    assert coffee(body, title=title, tags=tags).product.process == expected


@pytest.mark.parametrize(
    ("title", "body", "species", "chicory"),
    [
        ("Hustler", "<p>Variety : Arabica &amp; Robusta</p>", "blend", None),
        ("Robusta Kaapi Royale", "", "robusta", None),
        ("Estate", "<p>A naturally processed canephora.</p>", "robusta", None),
        ("Blend", "<p>100% Arabica.</p>", "arabica", None),
        ("Filter Coffee", "<p>Coffee 70% Chicory 30%</p>", None, 30),
        ("Filter Coffee", "<p>80:20 coffee chicory blend of Arabica and Robusta</p>", "blend", 20),
        ("Filter Coffee", "<p>Coffee blended with chicory.</p>", None, None),
        ("Excelsa Lot", "", "excelsa", None),
    ],
)
def test_species_and_chicory(title: str, body: str, species: str | None, chicory: int | None) -> None:
    p = coffee(body, title=title).product
    assert (p.species, p.chicory_pct) == (species, chicory)


@pytest.mark.parametrize(
    ("title", "body", "country", "region", "estate"),
    [
        (
            "Kolli Berri Estate",
            "<p>From Kolli Berri Estate, set in Chikmagalur, Karnataka.</p>",
            "IN",
            "Chikmagalur",
            "Kolli Berri",
        ),
        ("Nagaland Kohima Washed AA", "<p>From the hills of Kohima.</p>", "IN", "Nagaland", None),
        ("Blend", "<p>Grown in Baba Budan Giri, Chikkamagaluru.</p>", "IN", "Baba Budangiri", None),
        (
            "Warsanlyngdoh Coffee Collective",
            "<p>Meghalaya's collective.</p>",
            "IN",
            "Meghalaya",
            "Warsanlyngdoh Coffee Collective",
        ),
        ("Mercara Gold Estate", "", "IN", None, "Mercara Gold"),  # a region is not read from an estate name
        ("Blend", "<p>Coffee Origin: Chikmagalur, sourced from Manjarabad and Coorg.</p>", "IN", None, None),
        ("Brazil &amp; Ethiopia Blend", "<p>Brazil Cerrado with Ethiopia Sidamo.</p>", None, None, None),
        ("Truffle", "<p>One from Baarbara Estate and another from Attikan Estate.</p>", "IN", None, None),
    ],
)
def test_origin(title: str, body: str, country: str | None, region: str | None, estate: str | None) -> None:
    p = coffee(body, title=title).product
    assert (p.country, p.region, p.estate) == (country, region, estate)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<p>Elevation: 2800 Ft – 3600 Ft ASL</p>", (853, 1097)),
        ("<p>Elevation: 3050 Ft ASL – 3300 Ft ASL</p>", (930, 1006)),
        ("<p>Grown at 1450 masl.</p>", (1450, 1450)),
        ("<p>1,500–1,800 masl</p>", (1500, 1800)),
        ("<p>1100-1200 M above sea level</p>", (1100, 1200)),
        ("<p>at an elevation of 1050 MASL</p>", (1050, 1050)),
        ("<p>3500 feet above sea level</p>", (1067, 1067)),
        ("<p>Elevation + Coorg Ft , Karnataka – Ft Asl</p>", None),
        ("<p>Serve 250ml at 200g dose, SCA 85+, harvest 2023.</p>", None),
        ("<p>Grown at 5200 m.</p>", None),
    ],
)
def test_altitude(body: str, expected: tuple[int, int] | None) -> None:
    alt = coffee(body).product.altitude_m
    assert (None if alt is None else (alt.min, alt.max)) == expected


def test_varieties_aliases_and_order() -> None:
    body = "<p>Grows S795, SLN9, Sln.5B, Chandagiri, Kents and Geisha. A peaberry from Old Kent Estates.</p>"
    assert coffee(body).product.varieties == ["SLN 795", "SLN 9", "SLN 5B", "Chandragiri", "Kent", "Gesha"]


def test_tasting_notes_from_text_and_tags() -> None:
    body = (
        "<p>Expect layers of Cocoa, Sweet Spices, and Jaggery, lifted by a hint of Orange zest. "
        "Full-bodied and creamy; best black or with milk.</p>"
    )
    notes = coffee(body, tags=["tag_dark_chocolate", "chocolatey", "acidity-low"]).product.tasting_notes
    assert notes == ["cocoa", "sweet spice", "jaggery", "orange zest", "dark chocolate", "chocolate"]


def test_coffee_cherries_are_not_a_note() -> None:
    body = "<p>Ripe cherries were hand picked. Notes of plum and black cherry.</p>"
    assert coffee(body).product.tasting_notes == ["plum", "black cherry"]


@pytest.mark.parametrize(
    ("title", "body", "expected"),
    [
        ("Swiss Water Decaf Colombia", "", True),
        ("House", "<p>Caffeine-free, decaffeinated.</p>", True),
        ("House", "<p>Strong.</p>", False),
    ],
)
def test_decaf(title: str, body: str, expected: bool) -> None:
    assert coffee(body, title=title).product.decaf is expected


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Silver Oak Cafe Blend 75g", "Silver Oak Cafe Blend"),
        ("Salawara Bio Reactor Naturals (SCA 86+)", "Salawara Bio Reactor Naturals"),
        ("SKIA Coffee (Pack of 2)", "SKIA Coffee"),
        ("Cold Brew Blend – Coarse Ground 1 kg", "Cold Brew Blend"),
        ("House Blend 2 x 250g", "House Blend"),
        ("Mooleh Manay Estate – CM Natural", "Mooleh Manay Estate – CM Natural"),
        ("SUBSCRIPTION &#8211; 24 DELIVERIES", "SUBSCRIPTION – 24 DELIVERIES"),
    ],
)
def test_name_clean(title: str, expected: str) -> None:
    assert coffee("", title=title).product.name_clean == expected


def test_evidence_for_every_filled_attribute() -> None:
    res = coffee("<p>A washed lot from Coorg. Notes of jaggery.</p>", tags=["medium-roast"])
    filled = {
        a
        for a in ("roast_level", "process", "region", "country", "tasting_notes")
        if getattr(res.product, a) not in (None, [])
    }
    assert filled == {"roast_level", "process", "region", "country", "tasting_notes"}
    assert {e.attribute for e in res.evidence} >= filled
