"""General rules for wording the seen gold set does not use: labelled estates and regions, compound
flavour notes, note context (note lists vs. farming / process lines), regional grind words.

Every phrase here is written for these tests (invented farms and lots), not copied from a gold set.
"""

from __future__ import annotations

import pytest

from coffee_scraper.normalize.attributes import name_clean
from coffee_scraper.normalize.variants import grind_of

from ._helpers import coffee


# --------------------------------------------------------------------------- estate
@pytest.mark.parametrize(
    ("title", "body", "expected"),
    [
        # labelled lines, with and without a colon (a <strong> label becomes "Label Value")
        ("Colombia Tolima", "<p>Farm: El Mirador<br>Region: Tolima</p>", "El Mirador"),
        ("Hosahalli AA", "<p>Estate: Hosahalli Estate, Coorg<br>Altitude: 1,100 m</p>", "Hosahalli"),
        (
            "Rwanda Bumbogo",
            "<p><strong>Washing station</strong> Bumbogo<br><strong>Altitude</strong> 1,800 m</p>",
            "Bumbogo",
        ),
        ("Ethiopia Tega", "<p>Producer: Tega Cooperative<br>Process: Washed</p>", "Tega Cooperative"),
        ("Honduras Lot 7", "<p>Finca: Finca Los Pinos<br>Process: Washed</p>", "Finca Los Pinos"),
        # a producer label naming a person is not an estate
        ("Colombia Huila Lot", "<p>Producer: Jorge Ramírez<br>Region: Huila</p>", None),
        # generic values are not names
        ("Brazil Mogiana", "<p>Farm: Various smallholders<br>Region: Mogiana</p>", None),
        ("Peru Cajamarca", "<p>Farm: Cajamarca</p>", None),
        # farm words opening or closing a name in running text
        ("Guatemala Lot", "<p>Grown at Finca La Aurora by the Ochoa family.</p>", "Finca La Aurora"),
        ("Ecuador Lot", "<p>From Hacienda Sonora, high in the Andes.</p>", "Hacienda Sonora"),
        # an "Estate:" label on its own line does not turn the line above into an estate name
        ("Estate Lot", "<p>Coffee: 100% Arabica<br>Estate: Malleswara Estate</p>", "Malleswara"),
    ],
)
def test_estate_from_labels_and_farm_words(title: str, body: str, expected: str | None) -> None:
    assert coffee(body, title=title).product.estate == expected


def test_two_labelled_estates_conflict() -> None:
    res = coffee("<p>Farm: La Loma</p><p>Farm: El Roble</p>", title="Duo")
    assert res.product.estate is None
    assert "conflict:estate" in res.review_flags


# --------------------------------------------------------------------------- region / country
@pytest.mark.parametrize(
    ("body", "region", "country"),
    [
        # a foreign region outside the vocabulary, from its label
        ("<p>Origin: Costa Rica<br>Region: Zarcero<br>Process: Washed</p>", "Zarcero", "CR"),
        ("<p>Country: Peru<br>Province: San Ignacio Province</p>", "San Ignacio", "PE"),
        # an Indian label outside the canonical list stays null; a state is not a region
        ("<p>Origin: India<br>Region: Kudremukh</p>", None, "IN"),
        ("<p>Country: Kenya<br>Region: Central</p>", None, "KE"),
        # regions from the wider vocabulary
        ("<p>Grown in Chiapas, Mexico.</p>", "Chiapas", "MX"),
        ("<p>From the Haraz mountains of Yemen.</p>", "Haraz", "YE"),
        ("<p>Liberica from Batangas in the Philippines.</p>", "Batangas", "PH"),
    ],
)
def test_region_labels_and_vocabulary(body: str, region: str | None, country: str | None) -> None:
    p = coffee(body, title="Single Origin").product
    assert (p.region, p.country) == (region, country)


def test_coast_is_an_origin_cue() -> None:
    assert coffee("<p>Dried on the Pacific coast of Guatemala.</p>").product.country == "GT"


# --------------------------------------------------------------------------- tasting notes
@pytest.mark.parametrize(
    ("body", "tags", "expected"),
    [
        # compound notes: the longest phrase wins
        ("<p>Tasting notes: rum raisin, red wine, orange peel</p>", [], ["rum raisin", "red wine", "orange peel"]),
        ("<p>Notes: Orange zest, Lemon curd, Raspberry jam</p>", [], ["orange zest", "lemon curd", "raspberry jam"]),
        ("<p>Notes: Pipe tobacco and smoke.</p>", [], ["pipe tobacco", "smoke"]),
        # a wider lexicon
        (
            "<p>Flavour profile: honeydew, lemongrass, demerara, brown butter</p>",
            [],
            ["honeydew", "lemongrass", "demerara", "brown butter"],
        ),
        ("<p>Cup notes: bubblegum, star anise, nectarine</p>", [], ["bubblegum", "star anise", "nectarine"]),
        # spellings that differ only in spacing are kept as written
        ("<p>Notes: Red currants, Blackcurrant</p>", [], ["red currant", "blackcurrant"]),
        ("<p>Notes: redcurrant</p>", [], ["redcurrant"]),
        ("<p>Notes: lychee, litchi</p>", [], ["lychee", "litchi"]),
        # note-list labels without the word "notes"
        ("<p>In the cup: plum, cocoa, lime</p>", [], ["plum", "cocoa", "lime"]),
        ("<p>We taste fig, honey and clove.</p>", [], ["fig", "honey", "clove"]),
        # a bare list line is a note list, so list-only words count there
        ("<p>Roasted for filter.</p><p>Apricot, Honey, Black tea.</p>", [], ["apricot", "honey", "black tea"]),
        # farming context: shade trees and intercrops are not notes
        ("<p>Grown under banana and jackfruit shade.</p><p>Notes: caramel, almond</p>", [], ["caramel", "almond"]),
        ("<p>The estate is intercropped with pepper, vanilla and cardamom.</p>", [], []),
        ("<p>Raised among orange trees and cardamom by the Gowda family.</p><p>Notes: cocoa</p>", [], ["cocoa"]),
        # a process / decaf line is not a note list
        ("<p>Process: fermented 60 hours with cinnamon sticks and mango pulp</p><p>Notes: peach</p>", [], ["peach"]),
        ("<p>Decaffeinated with ethyl acetate made from molasses.</p><p>Notes: toffee</p>", [], ["toffee"]),
        ("<p>Roast: Dark · Notes: Jackfruit, Clove</p>", [], ["jackfruit", "clove"]),
        # but a field line that goes on into notes keeps them
        ("<p>Roast: medium, with notes of walnut and fig</p>", [], ["walnut", "fig"]),
        # a bare process tag is the process; a prefixed note tag is a note
        ("", ["honey"], []),
        ("", ["tag_honey"], ["honey"]),
        ("", ["chocolatey", "honey-process"], ["chocolate"]),
    ],
)
def test_tasting_note_rules(body: str, tags: list[str], expected: list[str]) -> None:
    assert coffee(body, tags=tags).product.tasting_notes == expected


# --------------------------------------------------------------------------- grind
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Cafetière", "french_press"),
        ("Cafetiere", "french_press"),
        ("Plunger", "french_press"),
        ("Press Pot", "french_press"),
        ("Stovetop", "moka_pot"),
        ("Espresso Fine", "espresso"),
        ("Coarse", "other"),
        ("Coarse (Plunger)", "french_press"),
        ("Batch Brew", "drip"),
    ],
)
def test_regional_grind_words(value: str, expected: str) -> None:
    assert grind_of(value) == expected


# --------------------------------------------------------------------------- roast / process / name
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<p>ROAST — Dark (espresso)</p>", "dark"),
        ("<p>Roast degree: medium-light</p>", "light_medium"),
        ("<p>焙煎度: 中煎り</p>", "medium"),
        ("<p>焙煎度: 深煎り (Dark)</p>", "dark"),
    ],
)
def test_roast_label_forms(body: str, expected: str) -> None:
    assert coffee(body).product.roast_level == expected


def test_drying_in_parchment_is_washed_not_natural() -> None:
    body = "<p>Pulped, washed and then sun-dried in parchment on patios.</p>"
    assert coffee(body, title="Peru Lot").product.process == "washed"


def test_box_of_several_processes_has_none() -> None:
    body = "<p>Three coffees in one box: a Sidamo natural, a Huila washed and a Tolima anaerobic.</p>"
    assert coffee(body, title="Trio Gift Box").product.process is None


def test_single_modifier_blend_keeps_its_process() -> None:
    assert coffee("<p>An anaerobic natural blend.</p>", title="Night Blend").product.process == "anaerobic"


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Bolivia Caranavi (88 pts)", "Bolivia Caranavi"),
        ("Kenya Nyeri AA 89.5 points", "Kenya Nyeri AA"),
        ("Ninety Plus Blend", "Ninety Plus Blend"),
    ],
)
def test_name_clean_drops_point_scores(title: str, expected: str) -> None:
    assert name_clean(title) == expected
