"""The dashboard's pages over real HTTP on a catalog filled by real demo-shop scrapes: every page renders, shop
text is escaped, filters filter, the price chart is drawn, scraping actions work, and the layout's slots.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import httpx
import pytest

from coffee_scraper.web.pages import templating
from coffee_scraper.web.pages.charts import Series, line_chart, nice_step, stacked_bar_chart
from tests.web.conftest import Seeded, csrf_of

ROW_RE = re.compile(r'<a href="/catalog/(\d+)" class="coffee-title">')


def coffee_ids(html: str) -> list[int]:
    return [int(i) for i in ROW_RE.findall(html)]


def test_every_page_renders_for_a_viewer(viewer: httpx.Client, seeded: Seeded) -> None:
    roaster_id = viewer.get("/api/v1/roasters").json()[0]["id"]
    pages = {
        "/": ["System", "database", "Last runs", "Roasters needing attention"],
        "/catalog": ["Catalog", "Per 250 g"],
        f"/catalog/{seeded.xss_coffee_id}": ["Attributes and evidence", "Variants", "Price history"],
        "/scraping": ["Roasters", seeded.shop_names[0], "Recent runs"],
        f"/scraping/roasters/{roaster_id}": ["State", "robots.txt", "Runs"],
        f"/scraping/runs/{seeded.quarantine_run_id}": ["Pages fetched", "Quarantined products"],
        "/account": ["API tokens", "Change password"],
    }
    for path, expected in pages.items():
        response = viewer.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        assert response.headers["content-type"].startswith("text/html")
        for text in expected:
            assert text in response.text, (path, text)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert 'href="#main"' in response.text  # skip link for keyboard users
        assert '<script src="/static/htmx.min.js"' in response.text and '<script src="http' not in response.text


def test_static_htmx_is_vendored_with_its_license(dash: str) -> None:
    response = httpx.get(f"{dash}/static/htmx.min.js", timeout=10)
    assert response.status_code == 200
    assert response.text.startswith("/*! htmx 2.") and "Zero-Clause BSD" in response.text[:600]
    assert httpx.get(f"{dash}/static/app.css", timeout=10).status_code == 200


def test_shop_text_is_escaped_everywhere(viewer: httpx.Client, seeded: Seeded) -> None:
    raw_markup = ("<script>window.__xss", "<img src=x onerror")
    stored = viewer.get(f"/api/v1/coffees/{seeded.xss_coffee_id}").json()["title"]
    assert "Evil Estate <3" in stored and "<script" not in stored  # the normalizer keeps text, drops tags
    detail = viewer.get(f"/catalog/{seeded.xss_coffee_id}").text
    listing = viewer.get("/catalog", params={"q": "evil estate"}).text
    run = viewer.get(f"/scraping/runs/{seeded.quarantine_run_id}").text
    for html in (detail, listing, run):
        for markup in raw_markup:
            assert markup not in html
    assert "Evil Estate &lt;3 &amp;" in detail and "Evil Estate &lt;3 &amp;" in listing
    shop_title = detail.split('class="shop-title">', 1)[1].split("</span>", 1)[0]
    assert unescape(shop_title) == stored
    raw = unescape(run.split('<pre class="raw">', 1)[1].split("</pre>", 1)[0])
    assert '<script>window.__xss = 1</script><img src=x onerror=\\"window.__xss = 2\\">' in raw


def test_catalog_filters_search_and_pagination(viewer: httpx.Client) -> None:
    everything = viewer.get("/api/v1/coffees", params={"limit": 500}).json()["items"]
    roast = next(c["roast_level"] for c in everything if c["roast_level"])
    expected = {c["id"] for c in everything if c["roast_level"] == roast}
    page = viewer.get("/catalog", params={"roast": roast}).text
    assert set(coffee_ids(page)) == expected
    assert f"{len(expected)} coffee" in page

    bound = sorted(c["per_250g_minor"] for c in everything if c["per_250g_minor"])[len(everything) // 3]
    cheap = viewer.get("/catalog", params={"max250": f"{bound / 100:.2f}", "sort": "price_250"}).text
    cheap_ids = coffee_ids(cheap)
    by_id = {c["id"]: c for c in everything}
    assert cheap_ids and all(by_id[i]["per_250g_minor"] <= bound for i in cheap_ids)
    prices = [by_id[i]["per_250g_minor"] for i in cheap_ids]
    assert prices == sorted(prices)

    bad = viewer.get("/catalog", params={"max250": "cheap", "page": "x"})
    assert bad.status_code == 200 and "is not a number" in bad.text and "page must be a number" in bad.text

    partial = viewer.get("/catalog", params={"q": "xyz-no-such-coffee"}, headers={"hx-request": "true"})
    assert partial.text.lstrip().startswith('<section id="results"') and "No coffee matches" in partial.text
    assert "<html" not in partial.text


def test_catalog_pages_through_all_coffees(viewer: httpx.Client, seeded: Seeded) -> None:
    total = viewer.get("/api/v1/coffees", params={"limit": 1}).json()["total"]
    size = seeded.settings.dashboard_page_size
    seen: list[int] = []
    page = 1
    while True:
        html = viewer.get("/catalog", params={"page": page, "sort": "name"}).text
        seen += coffee_ids(html)
        if 'rel="next"' not in html:
            break
        page += 1
    assert len(seen) == total == len(set(seen)) and page == -(-total // size)


def test_coffee_page_shows_evidence_variants_and_a_price_chart(viewer: httpx.Client) -> None:
    items = viewer.get("/api/v1/coffees", params={"limit": 500}).json()["items"]
    detail = None
    for item in items:  # a coffee with evidence and a price change between the two seeded runs
        candidate = viewer.get(f"/api/v1/coffees/{item['id']}").json()
        prices = viewer.get(f"/api/v1/coffees/{item['id']}/prices").json()
        if candidate["evidence"] and len({p["price_minor"] for p in prices}) > 1:
            detail = candidate
            break
    assert detail is not None
    html = viewer.get(f"/catalog/{detail['id']}").text
    evidence = next(e for e in detail["evidence"] if e["attribute"] == "roast_level" or e["attribute"] == "process")
    assert f"<q>{evidence['text']}</q>" in unescape(html).replace("&#34;", '"') or evidence["text"] in unescape(html)
    for variant in detail["variants"]:
        assert variant["title"] in unescape(html)
    svg = html.split("<svg", 1)[1].split("</svg>", 1)[0]
    paths = re.findall(r'<path d="([^"]+)"', svg)
    assert paths and all(re.fullmatch(r"[MHVL0-9. \-]+", d) for d in paths)
    assert 'role="img"' in html and "Price observations as a table" in html


def test_run_page_lists_pages_errors_and_quarantined_products(viewer: httpx.Client, seeded: Seeded) -> None:
    run = viewer.get(f"/api/v1/runs/{seeded.quarantine_run_id}").json()
    assert run["products_quarantined"] == 1 and run["status"] == "partial"
    html = viewer.get(f"/scraping/runs/{seeded.quarantine_run_id}").text
    reason = run["quarantined_products"][0]["reason"]
    assert unescape(html).count(reason) >= 1 and "no variants" in reason
    assert "products.json" in html and f"Pages fetched ({len(run['pages'])})" in html


def test_overview_shows_health_last_runs_and_pending_slots(viewer: httpx.Client) -> None:
    html = viewer.get("/").text
    assert "Host memory in use" in html and "Disk of" in html
    assert html.count('class="badge st-ok">ok</span>') >= 2  # database and migrations checks
    for slot in ("incidents", "queue", "heartbeats"):
        assert f'data-slot="{slot}"' in html
    incidents = html.split('data-slot="incidents"', 1)[1].split("</section>", 1)[0]  # filled by the incident pages
    assert "Not connected yet" not in incidents and 'href="/incidents?state=open&amp;severity=P0"' in incidents
    assert "full runs waiting" in html  # the jobs/ panels are filled
    heartbeats = html.split('data-slot="heartbeats"', 1)[1].split("</section>", 1)[0]
    assert "Not connected yet" not in heartbeats and ("alive" in heartbeats or "No scheduler" in heartbeats)


@pytest.fixture
def extra_slot() -> Iterator[None]:
    before = dict(templating.OVERVIEW_SLOTS)
    nav = list(templating.NAV)
    yield
    templating.OVERVIEW_SLOTS.clear()
    templating.OVERVIEW_SLOTS.update(before)
    templating.NAV[:] = nav


def test_other_parts_plug_into_the_overview_and_the_navigation(viewer: httpx.Client, extra_slot: None) -> None:
    def provider(session: Any, now: datetime) -> dict[str, Any]:
        return {"depth": {"P1 incidents": 2}, "paused": False, "reason": None}

    def broken(session: Any, now: datetime) -> dict[str, Any]:
        raise RuntimeError("incident store offline")

    # the queue panel's template stands in for an incident panel: same data-in, HTML-out contract
    templating.register_overview_slot("incidents", "overview/_slot_queue.html", provider, title="Open incidents")
    templating.register_overview_slot("extra", "overview/_slot_queue.html", broken, title="Broken panel")
    templating.register_nav(templating.NavItem("Incidents", "/incidents", order=20))
    html = viewer.get("/").text
    assert "P1 incidents runs waiting" in html
    assert "This panel failed to load: RuntimeError: incident store offline" in html
    nav = html.split('<nav aria-label="Main">', 1)[1].split("</nav>", 1)[0]
    assert re.findall(r'<a href="([^"]+)"', nav)[:3] == ["/", "/incidents", "/scraping"]
    assert 'data-slot="incidents"' in html


def test_operator_adds_pauses_and_resumes_a_roaster_from_the_pages(operator: httpx.Client) -> None:
    token = csrf_of(operator.get("/scraping").text)
    bad = operator.post("/scraping/roasters", data={"url": "ftp://nope", "csrf_token": token})
    assert bad.status_code == 400 and "is not a shop URL" in bad.text and 'value="ftp://nope"' in bad.text
    added = operator.post(
        "/scraping/roasters",
        data={"url": "pages-test.example", "name": "Pages <b>Test</b>", "currency": "inr", "csrf_token": token},
    )
    assert added.status_code == 303
    page = operator.get(added.headers["location"]).text
    assert "Pages &lt;b&gt;Test&lt;/b&gt;" in page and "https://pages-test.example" in page
    roaster_id = int(added.headers["location"].rsplit("/", 1)[1])
    duplicate = operator.post("/scraping/roasters", data={"url": "https://pages-test.example", "csrf_token": token})
    assert duplicate.status_code == 400 and "already exists" in duplicate.text

    paused = operator.post(
        f"/scraping/roasters/{roaster_id}/pause", data={"reason": "shop is moving", "csrf_token": token}
    )
    assert paused.status_code == 303
    state = operator.get(f"/api/v1/roasters/{roaster_id}").json()
    assert state["active"] is False and state["paused_reason"] == "shop is moving"
    assert state["next_full_run_at"] is None
    refused = operator.post(f"/scraping/roasters/{roaster_id}/run", data={"csrf_token": token})
    assert refused.status_code == 409 and "paused" in refused.text
    assert operator.post(f"/scraping/roasters/{roaster_id}/resume", data={"csrf_token": token}).status_code == 303
    resumed = operator.get(f"/api/v1/roasters/{roaster_id}").json()
    assert resumed["active"] is True and resumed["next_full_run_at"] is not None


def test_unknown_things_answer_html_404(viewer: httpx.Client) -> None:
    for path in ("/catalog/999999", "/scraping/runs/999999", "/scraping/roasters/999999"):
        response = viewer.get(path)
        assert response.status_code == 404 and "<h1>Not found</h1>" in response.text


# --- chart geometry ---------------------------------------------------------------------------------------


def test_nice_steps() -> None:
    assert [nice_step(s) for s in (10, 7, 120, 0.3)] == [2.0, 2.0, 50.0, 0.1]


def test_line_chart_keeps_points_inside_the_plot_and_labels_as_given() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    series = [
        Series("<b>250 g</b>", [(t0, 450.0), (t0 + timedelta(days=10), 500.0), (t0 + timedelta(days=20), 480.0)]),
        Series("1 kg", [(t0 + timedelta(days=5), 1600.0)]),
        Series("empty", []),
    ]
    chart = line_chart(series, title="t", y_label="INR", now=t0 + timedelta(days=30))
    assert [line.label for line in chart.lines] == ["<b>250 g</b>", "1 kg"]
    for line in chart.lines:
        for m in line.markers:
            assert chart.left <= m.x <= chart.left + chart.plot_w
            assert chart.top <= m.y <= chart.top + chart.plot_h
    ys = [m.y for m in chart.lines[0].markers]
    assert ys[1] < ys[0] and ys[1] < ys[2]  # higher price = higher on screen
    assert chart.lines[0].d.endswith(f"H{float(chart.left + chart.plot_w)}")  # the last price holds until now
    assert line_chart([], title="t", y_label="y", now=t0).empty


def test_stacked_bars_stack_to_their_totals() -> None:
    chart = stacked_bar_chart(
        [("d1", {"ok": 3, "fail": 1}), ("d2", {}), ("d3", {"ok": 1})], keys=["ok", "fail"], title="t", y_label="runs"
    )
    first = chart.bars[0]
    assert first.total == 4 and [s.key for s in first.segments] == ["ok", "fail"]
    bottom = chart.top + chart.plot_h
    assert first.segments[0].y + first.segments[0].h == pytest.approx(bottom, abs=0.2)
    assert first.segments[1].y + first.segments[1].h == pytest.approx(first.segments[0].y, abs=0.2)
    assert chart.bars[1].segments == [] and not chart.empty
