"""The dashboard in a real browser (Playwright driving Debian's Chromium): log in, every page at laptop and phone
widths (screenshots saved to test-artifacts/screenshots/), an XSS payload renders as text, filtering coffees with
htmx, adding a roaster and running it against a demo shop, keyboard access. No CSP violations, no page errors.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coffee_scraper.demo.catalog import make_shopify_products
from coffee_scraper.demo.server import DemoServer, DemoShop
from tests.web.conftest import ARTIFACTS, PASSWORDS, Seeded

CHROMIUM = Path(os.environ.get("COFFEE_SCRAPER_TEST_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
SHOTS = ARTIFACTS / "screenshots"
WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}

if not CHROMIUM.exists():
    pytest.skip(
        f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium); CI installs it",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no `playwright install`)")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A page with its console errors and uncaught exceptions collected (CSP violations land in the console)."""

    def __init__(self, page: object) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))  # type: ignore[attr-defined]
        page.on(  # type: ignore[attr-defined]
            "console", lambda msg: self.problems.append(f"console: {msg.text}") if msg.type == "error" else None
        )


def open_page(browser: object, base: str, user: str, width: str = "laptop") -> Watched:
    w, h = WIDTHS[width]
    context = browser.new_context(viewport={"width": w, "height": h}, base_url=base)  # type: ignore[attr-defined]
    watched = Watched(context.new_page())
    page = watched.page
    page.goto("/login")  # type: ignore[attr-defined]
    page.fill("#username", user)  # type: ignore[attr-defined]
    page.fill("#password", PASSWORDS[user])  # type: ignore[attr-defined]
    page.click("form button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(f"{base}/")  # type: ignore[attr-defined]
    return watched


def shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_login_page_and_every_page_at_laptop_and_phone_width(browser: object, dash: str, seeded: Seeded) -> None:
    roaster_id = seeded.roaster_id
    for width in WIDTHS:
        context = browser.new_context(viewport=dict(zip(("width", "height"), WIDTHS[width], strict=True)))  # type: ignore[attr-defined]
        page = context.new_page()
        page.goto(f"{dash}/")
        assert page.url.startswith(f"{dash}/login")
        shot(page, f"login-{width}")
        context.close()
        watched = open_page(browser, dash, "admin", width)
        page = watched.page
        pages = {
            "overview": "/",
            "catalog": "/catalog",
            "coffee": f"/catalog/{seeded.xss_coffee_id}",
            "scraping": "/scraping",
            "roaster": f"/scraping/roasters/{roaster_id}",
            "run": f"/scraping/runs/{seeded.quarantine_run_id}",
            "account": "/account",
            "users": "/admin/users",
        }
        for name, path in pages.items():
            response = page.goto(path)  # type: ignore[attr-defined]
            assert response is not None and response.status == 200, (name, path)
            assert page.locator("h1").first.is_visible()  # type: ignore[attr-defined]
            shot(page, f"{name}-{width}")
        if width == "phone":  # nothing wider than the screen except inside horizontally scrolling tables
            page.goto("/catalog")  # type: ignore[attr-defined]
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")  # type: ignore[attr-defined]
            assert overflow <= 1
        assert watched.problems == []
        page.context.close()  # type: ignore[attr-defined]
    assert len(list(SHOTS.glob("*.png"))) >= 18


def test_keyboard_reaches_the_skip_link_and_the_navigation(browser: object, dash: str) -> None:
    watched = open_page(browser, dash, "viewer")
    page = watched.page
    page.goto("/catalog")  # type: ignore[attr-defined]
    page.keyboard.press("Tab")  # type: ignore[attr-defined]
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"  # type: ignore[attr-defined]
    page.keyboard.press("Enter")  # type: ignore[attr-defined]
    assert page.evaluate("location.hash") == "#main"  # type: ignore[attr-defined]
    focused = []
    page.goto("/")  # type: ignore[attr-defined]
    for _ in range(6):
        page.keyboard.press("Tab")  # type: ignore[attr-defined]
        focused.append(page.evaluate("document.activeElement.getAttribute('href')"))  # type: ignore[attr-defined]
    assert {"/scraping", "/catalog"} <= set(focused)
    page.context.close()  # type: ignore[attr-defined]


def test_xss_payload_in_a_product_title_renders_as_text(browser: object, dash: str, seeded: Seeded) -> None:
    watched = open_page(browser, dash, "viewer")
    page = watched.page
    stored = httpx.get(
        f"{dash}/api/v1/coffees/{seeded.xss_coffee_id}", headers={"cookie": _cookie(page)}, timeout=10
    ).json()["title"]
    page.goto(f"/catalog/{seeded.xss_coffee_id}")  # type: ignore[attr-defined]
    assert page.inner_text(".shop-title") == stored  # type: ignore[attr-defined]
    assert page.evaluate("window.__xss === undefined")  # type: ignore[attr-defined]
    page.goto(f"/scraping/runs/{seeded.quarantine_run_id}")  # type: ignore[attr-defined]
    page.click("details summary")  # type: ignore[attr-defined]
    raw = page.inner_text("pre.raw")  # type: ignore[attr-defined]
    assert "<script>window.__xss = 1</script>" in raw and "onerror" in raw
    assert page.locator("pre.raw script").count() == 0 and page.locator("pre.raw img").count() == 0  # type: ignore[attr-defined]
    assert page.evaluate("window.__xss === undefined")  # type: ignore[attr-defined]
    shot(page, "xss-as-text")
    assert watched.problems == []
    page.context.close()  # type: ignore[attr-defined]


def _cookie(page: object) -> str:
    cookies = page.context.cookies()  # type: ignore[attr-defined]
    return "; ".join(f"{c['name']}={c['value']}" for c in cookies)


def test_filter_coffees_with_htmx(browser: object, dash: str) -> None:
    watched = open_page(browser, dash, "viewer")
    page = watched.page
    page.goto("/catalog")  # type: ignore[attr-defined]
    total_text = page.inner_text("#results-count")  # type: ignore[attr-defined]
    options = page.eval_on_selector_all("#f-roast option", "os => os.map(o => o.value).filter(Boolean)")  # type: ignore[attr-defined]
    roast = options[0]
    page.select_option("#f-roast", roast)  # type: ignore[attr-defined]
    page.wait_for_url(re.compile(rf"roast={roast}"))  # type: ignore[attr-defined]
    page.wait_for_function("t => document.querySelector('#results-count').innerText !== t", arg=total_text)  # type: ignore[attr-defined]
    cells = page.eval_on_selector_all("table.coffees tbody tr td:nth-child(3)", "tds => tds.map(t => t.innerText)")  # type: ignore[attr-defined]
    assert cells and set(cells) == {roast.replace("_", " ")}
    page.fill("#f-q", "zzz-nothing-like-this")  # type: ignore[attr-defined]
    page.wait_for_selector("text=No coffee matches these filters.")  # type: ignore[attr-defined]
    shot(page, "catalog-filtered")
    assert page.evaluate("document.querySelectorAll('header nav').length") == 1  # swapped a fragment, not a page  # type: ignore[attr-defined]
    assert watched.problems == []
    page.context.close()  # type: ignore[attr-defined]


def test_add_a_roaster_and_run_it_against_a_demo_shop(browser: object, dash: str) -> None:
    with DemoServer([DemoShop("browser", "shopify", make_shopify_products(8, seed=31))]) as demo:
        watched = open_page(browser, dash, "operator")
        page = watched.page
        page.goto("/scraping")  # type: ignore[attr-defined]
        page.fill("#r-url", demo.url("browser"))  # type: ignore[attr-defined]
        page.fill("#r-name", "Browser Roaster")  # type: ignore[attr-defined]
        page.click("#add-roaster button[type=submit]")  # type: ignore[attr-defined]
        page.wait_for_url(re.compile(r"/scraping/roasters/\d+$"))  # type: ignore[attr-defined]
        assert page.inner_text("h1") == "Browser Roaster"  # type: ignore[attr-defined]
        page.click("button:has-text('Run now')")  # type: ignore[attr-defined]
        page.wait_for_selector("#roaster-runs .badge.st-ok", timeout=30_000)  # htmx polls the runs table  # type: ignore[attr-defined]
        row = page.inner_text("#roaster-runs tbody tr")  # type: ignore[attr-defined]
        assert "full" in row and "8" in row
        shot(page, "roaster-after-run")
        page.goto("/catalog?roaster=Browser+Roaster")  # type: ignore[attr-defined]
        assert page.locator("table.coffees tbody tr").count() > 0  # type: ignore[attr-defined]
        assert watched.problems == []
        page.context.close()  # type: ignore[attr-defined]
