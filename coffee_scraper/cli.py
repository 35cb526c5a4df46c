"""Every command a user types (Typer): parse, call a domain function, print (table or --json).

No business logic here: scraping is in ``pipeline/``, queries in ``catalog/service.py``.
Exit codes: 0 ok, 1 some roasters failed, 2 usage or configuration error.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from coffee_scraper.accounts.cli import users_app
from coffee_scraper.catalog import db, service
from coffee_scraper.catalog.models import Coffee, QuarantinedProduct, Roaster, ScrapeRun
from coffee_scraper.incidents.commands import incidents_app
from coffee_scraper.incidents.oncall_commands import notify_app, oncall_app
from coffee_scraper.incidents.ops_commands import register as register_ops_commands
from coffee_scraper.incidents.watchdog_commands import app as watchdog_app
from coffee_scraper.jobs.commands import jobs_app, worker
from coffee_scraper.observability.logging import configure_logging, get_logger
from coffee_scraper.observability.redact import mask_url
from coffee_scraper.pipeline.run import RunReport, replay_run, run_many
from coffee_scraper.settings import Settings, get_settings

app = typer.Typer(
    help="coffee-scraper: keep a live, correct database of the coffees roasters sell online.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
roasters_app = typer.Typer(help="Add, list and import the roasters (shops) to scrape.", no_args_is_help=True)
coffees_app = typer.Typer(help="Query the catalog.", no_args_is_help=True)
runs_app = typer.Typer(
    help="Look at scrape runs: status, counters, errors, quarantined products.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(roasters_app, name="roasters")
app.add_typer(coffees_app, name="coffees")
app.add_typer(runs_app, name="runs")
app.add_typer(db_app, name="db")
app.add_typer(incidents_app, name="incidents")
app.add_typer(watchdog_app, name="watchdog")
app.add_typer(oncall_app, name="oncall")
app.add_typer(notify_app, name="notify")
app.add_typer(jobs_app, name="jobs")
app.add_typer(users_app, name="users")
app.command("worker")(worker)
register_ops_commands(app, incidents_app)  # diagnose, remediate, runbook, report; incidents postmortem/check

# Not a terminal (pipes, CI logs): wide lines rather than tables squeezed into 80 columns.
out = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=200)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


class UsageError(Exception):
    """A user or configuration mistake: printed with what to do, exit code 2."""


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def settings() -> Settings:
    return get_settings()


@contextmanager
def database(upgrade: bool = True) -> Iterator[sessionmaker[Session]]:
    """A session factory on the configured database, migrated to the newest schema first."""
    s = settings()
    configure_logging(s, console_level="ERROR")  # the summary says it all; the log files keep the rest
    try:
        if upgrade:
            db.upgrade(s.database_url)
        engine = db.make_engine(s.database_url)
    except db.DatabaseConfigError as exc:
        raise fail(str(exc)) from exc
    except Exception as exc:
        raise fail(
            f"cannot open the database {_masked(s.database_url)}: {type(exc).__name__}: {exc}. "
            "Check COFFEE_SCRAPER_DATABASE_URL and that the server is running."
        ) from exc
    try:
        yield db.session_factory(engine)
    except service.CatalogError as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()


def _masked(url: str) -> str:
    return mask_url(url)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


# --- db -----------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest version (safe to run again); a separate incident store
    (COFFEE_SCRAPER_INCIDENTS_DATABASE_URL) too."""
    from coffee_scraper.incidents import store

    s = settings()
    urls = [s.database_url] + ([store.incidents_url(s)] if store.is_separate(s) else [])
    for url in urls:
        try:
            db.upgrade(url)
        except db.DatabaseConfigError as exc:
            raise fail(str(exc)) from exc
        except Exception as exc:
            raise fail(f"migration failed on {_masked(url)}: {exc}") from exc
        out.print(f"database {_masked(url)} is at revision {db.head_revision()}")


# --- roasters -------------------------------------------------------------------------------------


def _roaster_row(r: Roaster) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "base_url": r.base_url,
        "platform": r.platform,
        "currency": r.currency,
        "active": r.active,
        "circuit_state": r.circuit_state,
        "robots_allowed": r.robots_allowed,
        "last_run_at": r.last_run_at,
        "last_success_at": r.last_success_at,
        "paused_reason": r.paused_reason,
    }


@roasters_app.command("add")
def roasters_add(
    url: Annotated[str, typer.Argument(help="The shop's URL or bare host, e.g. example-roaster.in")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the host name).")] = None,
    platform: Annotated[str, typer.Option(help="auto, shopify or woocommerce.")] = "auto",
    currency: Annotated[str | None, typer.Option(help="Shop currency (ISO 4217) when the shop does not say.")] = None,
    delay: Annotated[float | None, typer.Option(help="Seconds between requests to this shop.")] = None,
    full_cadence: Annotated[
        str | None, typer.Option(help="Cron of full runs, e.g. '0 3 1 * *' (default: COFFEE_SCRAPER_FULL_CADENCE).")
    ] = None,
    price_cadence: Annotated[
        str | None, typer.Option(help="Cron of price runs, e.g. '0 4 * * 0' (default: COFFEE_SCRAPER_PRICE_CADENCE).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a roaster's shop to scrape."""
    from urllib.parse import urlparse

    from coffee_scraper.jobs.cadence import CadenceError, validate_cron

    cadences: dict[str, Any] = {}
    try:
        if full_cadence is not None:
            cadences["full_cadence"] = validate_cron(full_cadence, what="--full-cadence")
        if price_cadence is not None:
            cadences["price_cadence"] = validate_cron(price_cadence, what="--price-cadence")
    except CadenceError as exc:
        raise fail(str(exc)) from exc

    if "://" not in url:  # a bare shop host: example-roaster.in
        url = f"https://{url.strip().strip('/')}"
    parsed = urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc or " " in parsed.netloc:
        raise fail(f"{url!r} is not a shop URL; give it as https://host or a bare host name")
    with database() as factory, db.session_scope(factory) as session:
        roaster = service.add_roaster(
            session,
            name or parsed.hostname or url,
            url,
            platform=platform,
            currency=currency,
            delay_s=delay,
            **cadences,
        )
        row = _roaster_row(roaster)
    if as_json:
        _print_json(row)
    else:
        out.print(f"added roaster {row['name']} ({row['base_url']}, platform {row['platform']})")


@roasters_app.command("list")
def roasters_list(as_json: JsonOpt = False) -> None:
    """List the roasters with platform, circuit state, cadences, next full/price runs and last results."""
    from coffee_scraper.catalog.models import utcnow
    from coffee_scraper.jobs.service import schedule_views

    now = utcnow()
    with database() as factory, factory() as session:
        rows = [_roaster_row(r) for r in service.list_roasters(session)]
        views = {(v.roaster, v.mode): v for v in schedule_views(session, settings(), now)}
    for r in rows:
        for mode in ("full", "price"):
            v = views.get((r["name"], mode))
            r[f"{mode}_cadence"] = v.cadence if v else None
            r[f"next_{mode}_at"] = v.next_due_at if v else None
    if as_json:
        _print_json(rows)
        return
    table = Table("name", "url", "platform", "state", "circuit", "full cadence", "next full", "price cadence",
                  "next price", "last success")  # fmt: skip
    for r in rows:
        table.add_row(
            r["name"],
            r["base_url"],
            r["platform"],
            "active" if r["active"] else f"paused: {r['paused_reason'] or 'by hand'}",
            r["circuit_state"],
            r["full_cadence"] or "",
            str(r["next_full_at"] or "")[:16],
            r["price_cadence"] or "",
            str(r["next_price_at"] or "")[:16],
            str(r["last_success_at"] or "never")[:19],
        )
    out.print(table)


def load_roaster_file(path: Path) -> list[dict[str, Any]]:
    """Roasters from TOML (``[[roaster]]`` tables) or CSV (header: name,url[,platform,currency])."""
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    if path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path} is not valid TOML: {exc}") from exc
        entries = data.get("roaster", [])
    elif path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            entries = list(csv.DictReader(fh))
    else:
        raise UsageError(f"{path}: use a .toml file with [[roaster]] tables or a .csv file with a name,url header")
    rows = []
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not entry.get("url") or not entry.get("name"):
            raise UsageError(f"{path}: entry {i} needs both 'name' and 'url'")
        rows.append(entry)
    return rows


@roasters_app.command("import")
def roasters_import(
    file: Annotated[Path, typer.Argument(help="A .toml ([[roaster]] name/url/platform/currency) or .csv file.")],
    as_json: JsonOpt = False,
) -> None:
    """Add or update many roasters from a file (idempotent)."""
    try:
        entries = load_roaster_file(file)
    except UsageError as exc:
        raise fail(str(exc)) from exc
    with database() as factory, db.session_scope(factory) as session:
        names = []
        for entry in entries:
            service.add_roaster(
                session,
                entry["name"],
                entry["url"],
                platform=entry.get("platform") or "auto",
                currency=entry.get("currency") or None,
                update_existing=True,
            )
            names.append(entry["name"])
    if as_json:
        _print_json({"imported": names})
    else:
        out.print(f"imported {len(names)} roasters from {file}")


# --- scrape -------------------------------------------------------------------------------------


def _print_reports(reports: list[RunReport], as_json: bool) -> int:
    """A summary table, then one paragraph per roaster that did not finish cleanly. Returns the exit code."""
    if as_json:
        _print_json([{**r.__dict__} for r in reports])
    else:
        table = Table(
            "roaster",
            "status",
            "pages",
            "seen",
            "new",
            "updated",
            "unchanged",
            "quarantined",
            "missing",
            "price rows",
        )
        for r in reports:
            colour = {"ok": "green", "partial": "yellow"}.get(r.status, "red")
            table.add_row(
                r.roaster,
                f"[{colour}]{r.status}[/]",
                str(r.pages),
                str(r.products_seen),
                str(r.new),
                str(r.updated),
                str(r.unchanged),
                str(r.quarantined),
                str(r.missing),
                str(r.price_changes),
            )
        out.print(table)
        troubled = [r for r in reports if r.status != "ok"]
        for r in troubled:
            first = next((e for e in r.errors if e["kind"] != "quarantined"), r.errors[0] if r.errors else None)
            out.print(f"[bold]{r.roaster}[/] (run {r.run_id}): {r.status}", highlight=False)
            if first:
                out.print(f"  {first['kind']}: {first['message']}", highlight=False, markup=False)
                if first.get("hint"):
                    out.print(f"  → {first['hint']}", highlight=False, markup=False)
        if troubled:
            out.print(
                f"{len(troubled)} of {len(reports)} roasters did not finish cleanly; "
                "`coffee-scraper runs show RUN_ID` has every error."
            )
    return 1 if any(r.status == "fail" for r in reports) else 0


def scrape_roasters(names: list[str] | None, mode: str, *, as_json: bool, s: Settings | None = None) -> list[RunReport]:
    s = s or settings()
    with database() as factory:
        with factory() as session:
            known = service.list_roasters(session)
            if names:
                missing = [n for n in names if n not in {r.name for r in known}]
                if missing:
                    raise fail(f"unknown roaster(s): {', '.join(missing)}; `coffee-scraper roasters list` shows them")
                selected = names
            else:
                selected = [r.name for r in known if r.active]
        if not selected:
            raise fail("no roasters to scrape; add one with `coffee-scraper roasters add URL`")
        log = get_logger("app")
        log.info("scrape_start", roasters=len(selected), mode=mode)
        if sys.stderr.isatty() and not as_json:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
            ) as bar:
                tasks = {n: bar.add_task(n, total=None) for n in selected}

                def progress(name: str, done: int, total: int | None) -> None:
                    bar.update(tasks[name], completed=done, total=total)

                reports = asyncio.run(run_many(selected, mode, settings=s, factory=factory, progress=progress))  # type: ignore[arg-type]
        else:

            def plain(report: RunReport) -> None:
                if not as_json:
                    err.print(f"{report.roaster}: {report.status} ({report.pages} pages, {report.duration_s}s)")

            reports = asyncio.run(run_many(selected, mode, settings=s, factory=factory, on_done=plain))  # type: ignore[arg-type]
        for r in reports:
            log.info("run_done", roaster=r.roaster, run_id=r.run_id, status=r.status, summary=r.error_summary)
    return reports


@app.command()
def scrape(
    roaster: Annotated[
        list[str] | None, typer.Option("--roaster", "-r", help="Only these roasters (repeatable).")
    ] = None,
    mode: Annotated[str, typer.Option(help="full (everything) or price (prices and availability only).")] = "full",
    as_json: JsonOpt = False,
) -> None:
    """Scrape the active roasters (or the named ones) now."""
    if mode not in {"full", "price"}:
        raise fail(f"--mode must be full or price, not {mode!r}")
    reports = scrape_roasters(roaster, mode, as_json=as_json)
    raise typer.Exit(_print_reports(reports, as_json))


@app.command()
def replay(
    run_id: Annotated[int, typer.Argument(help="The run whose stored pages to re-normalize.")],
    as_json: JsonOpt = False,
) -> None:
    """Re-normalize a run's stored raw pages into the catalog (no network)."""
    with database() as factory:
        report = replay_run(run_id, settings=settings(), factory=factory)
    raise typer.Exit(_print_reports([report], as_json))


@app.command()
def normalize(
    input: Annotated[str, typer.Argument(help="A products.json body or WooCommerce list; - reads stdin.")],
    platform: Annotated[str, typer.Option(help="shopify or woocommerce.")],
    currency: Annotated[str | None, typer.Option(help="Shop currency (needed for Shopify dumps).")] = None,
) -> None:
    """Normalize a storefront dump to JSON Lines on stdout (no network, no database)."""
    from coffee_scraper.normalize.cli_support import normalize_dump_to_jsonl

    if platform not in {"shopify", "woocommerce"}:
        raise fail(f"--platform must be shopify or woocommerce, not {platform!r}")
    if platform == "shopify" and not currency:
        raise fail("Shopify dumps carry no currency: pass --currency CODE (e.g. --currency INR)")
    try:
        text = sys.stdin.read() if input == "-" else Path(input).read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot read {input}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"{input} is not JSON ({exc}); give a products.json body or a WooCommerce product list") from exc
    try:
        for line in normalize_dump_to_jsonl(data, platform, currency):  # type: ignore[arg-type]
            sys.stdout.write(line + "\n")
    except ValueError as exc:
        raise fail(str(exc)) from exc


# --- coffees --------------------------------------------------------------------------------------


def _coffee_row(c: Coffee, *, full: bool = False) -> dict[str, Any]:
    variants = [v for v in c.variants if v.status == "active"]
    priced = [v for v in variants if v.price_minor > 0]
    cheapest = min(priced, key=lambda v: v.price_minor) if priced else None
    row: dict[str, Any] = {
        "id": c.id,
        "roaster": c.roaster.name,
        "name": c.name_clean,
        "title": c.title,
        "roast_level": c.roast_level,
        "process": c.process,
        "species": c.species,
        "country": c.country,
        "region": c.region,
        "estate": c.estate,
        "varieties": c.varieties,
        "tasting_notes": c.tasting_notes,
        "in_stock": any(v.in_stock for v in variants),
        "from_price_minor": cheapest.price_minor if cheapest else None,
        "currency": cheapest.currency if cheapest else None,
        "status": c.status,
    }
    if full:
        row.update(
            platform=c.platform,
            platform_product_id=c.platform_product_id,
            is_coffee=c.is_coffee,
            chicory_pct=c.chicory_pct,
            decaf=c.decaf,
            altitude_m={"min": c.altitude_min_m, "max": c.altitude_max_m} if c.altitude_min_m else None,
            evidence=c.evidence,
            review_flags=c.review_flags,
            variants=[
                {
                    k: getattr(v, k)
                    for k in (
                        "platform_variant_id",
                        "title",
                        "weight_g",
                        "pack_count",
                        "grind",
                        "price_minor",
                        "compare_at_minor",
                        "currency",
                        "in_stock",
                        "status",
                    )
                }
                for v in c.variants
            ],
        )
    return row


def _money(minor: int | None, currency: str | None) -> str:
    return "" if minor is None else f"{minor / 100:,.2f} {currency or ''}".strip()


@coffees_app.command("list")
def coffees_list(
    roaster: Annotated[str | None, typer.Option(help="Roaster name.")] = None,
    roast: Annotated[str | None, typer.Option(help="light, light_medium, medium, medium_dark, dark.")] = None,
    process: Annotated[str | None, typer.Option(help="washed, natural, honey, anaerobic, …")] = None,
    country: Annotated[str | None, typer.Option(help="Origin country, ISO alpha-2 (IN).")] = None,
    region: Annotated[str | None, typer.Option(help="Growing region, e.g. Chikmagalur.")] = None,
    search: Annotated[str | None, typer.Option(help="Words in the title.")] = None,
    min_price: Annotated[float | None, typer.Option(help="Lowest variant price (major units, e.g. 300).")] = None,
    max_price: Annotated[float | None, typer.Option(help="Highest variant price (major units).")] = None,
    in_stock: Annotated[bool | None, typer.Option("--in-stock/--out-of-stock", help="Availability.")] = None,
    all_products: Annotated[bool, typer.Option("--all", help="Include non-coffee products and missing ones.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Query the catalog with filters."""
    stmt = service.coffees_query(
        roaster=roaster,
        roast=roast,
        process=process,
        country=country,
        region=region,
        search=search,
        coffee_only=not all_products,
        include_missing=all_products,
        in_stock=in_stock,
        min_price_minor=round(min_price * 100) if min_price is not None else None,
        max_price_minor=round(max_price * 100) if max_price is not None else None,
    ).limit(limit)
    with database() as factory, factory() as session:
        rows = [_coffee_row(c) for c in session.scalars(stmt)]
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "roaster", "coffee", "roast", "process", "origin", "from", "stock")
    for r in rows:
        origin = ", ".join(x for x in (r["region"], r["country"]) if x)
        table.add_row(
            str(r["id"]),
            r["roaster"],
            r["name"],
            r["roast_level"] or "",
            r["process"] or "",
            origin,
            _money(r["from_price_minor"], r["currency"]),
            "yes" if r["in_stock"] else "no",
        )
    out.print(table)
    out.print(f"{len(rows)} coffees")


@coffees_app.command("show")
def coffees_show(
    coffee_id: Annotated[int, typer.Argument(help="Coffee id from `coffees list`.")], as_json: JsonOpt = False
) -> None:
    """One coffee with its attributes, evidence, variants and price history."""
    with database() as factory, factory() as session:
        coffee = session.get(Coffee, coffee_id)
        if coffee is None:
            raise fail(f"no coffee with id {coffee_id}; `coffee-scraper coffees list` shows ids")
        row = _coffee_row(coffee, full=True)
        row["price_history"] = [
            {
                "variant_id": p.variant_id,
                "observed_at": p.observed_at,
                "price_minor": p.price_minor,
                "compare_at_minor": p.compare_at_minor,
                "in_stock": p.in_stock,
                "currency": p.currency,
            }
            for p in service.price_history(session, coffee_id)
        ]
    if as_json:
        _print_json(row)
        return
    for key in (
        "name",
        "title",
        "roaster",
        "roast_level",
        "process",
        "species",
        "country",
        "region",
        "estate",
        "altitude_m",
        "varieties",
        "tasting_notes",
        "decaf",
        "chicory_pct",
        "review_flags",
    ):
        out.print(f"[bold]{key}[/]: {row[key]}", highlight=False, markup=True)
    table = Table("variant", "weight g", "packs", "grind", "price", "compare at", "stock")
    for v in row["variants"]:
        table.add_row(
            v["title"],
            str(v["weight_g"] or ""),
            str(v["pack_count"]),
            v["grind"] or "",
            _money(v["price_minor"], v["currency"]),
            _money(v["compare_at_minor"], v["currency"]),
            "yes" if v["in_stock"] else "no",
        )
    out.print(table)
    out.print(f"{len(row['price_history'])} price observations")


# --- runs -----------------------------------------------------------------------------------------


def _run_row(run: ScrapeRun, roaster: str) -> dict[str, Any]:
    return {
        "id": run.id,
        "roaster": roaster,
        "mode": run.mode,
        "status": run.status,
        "platform": run.platform,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "pages": run.pages_fetched,
        "products_seen": run.products_seen,
        "new": run.products_new,
        "updated": run.products_updated,
        "unchanged": run.products_unchanged,
        "quarantined": run.products_quarantined,
        "missing": run.products_missing,
        "price_changes": run.price_changes,
        "error_summary": run.error_summary,
    }


@runs_app.command("list")
def runs_list(
    roaster: Annotated[str | None, typer.Option(help="Only this roaster.")] = None,
    limit: Annotated[int, typer.Option(help="Newest N runs.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Recent runs, newest first."""
    with database() as factory, factory() as session:
        stmt = select(ScrapeRun, Roaster.name).join(Roaster).order_by(ScrapeRun.id.desc()).limit(limit)
        if roaster:
            stmt = stmt.where(Roaster.name == roaster)
        rows = [_run_row(run, name) for run, name in session.execute(stmt)]
    if as_json:
        _print_json(rows)
        return
    table = Table("id", "roaster", "mode", "status", "started", "pages", "seen", "quarantined", "problem")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["roaster"],
            r["mode"],
            r["status"],
            str(r["started_at"])[:19],
            str(r["pages"]),
            str(r["products_seen"]),
            str(r["quarantined"]),
            r["error_summary"] or "",
        )
    out.print(table)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[int, typer.Argument(help="Run id from `runs list`.")], as_json: JsonOpt = False
) -> None:
    """One run: counters, every recorded error and the quarantined products with reasons."""
    with database() as factory, factory() as session:
        run = session.get(ScrapeRun, run_id)
        if run is None:
            raise fail(f"no run {run_id}; `coffee-scraper runs list` shows recent runs")
        roaster = session.get(Roaster, run.roaster_id)
        assert roaster is not None
        row = _run_row(run, roaster.name)
        row["errors"] = run.errors
        row["quarantined_products"] = [
            {"platform_product_id": q.platform_product_id, "reason": q.reason}
            for q in session.scalars(select(QuarantinedProduct).where(QuarantinedProduct.run_id == run_id))
        ]
    if as_json:
        _print_json(row)
        return
    for key, value in row.items():
        if key not in {"errors", "quarantined_products"}:
            out.print(f"[bold]{key}[/]: {value}", highlight=False)
    for e in row["errors"]:
        out.print(f"- {e['kind']}: {e['message']}" + (f" → {e['hint']}" if e.get("hint") else ""), highlight=False)


# --- settings -------------------------------------------------------------------------------------


@app.command("settings")
def settings_cmd(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the reference table (docs/settings.md).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Every setting with its current value, default and meaning (secrets masked)."""
    from coffee_scraper.settings import settings_markdown

    if markdown:
        sys.stdout.write(settings_markdown())
        return
    s = settings()
    rows = []
    for name, field in Settings.model_fields.items():
        value = getattr(s, name)
        if name == "database_url":
            value = _masked(str(value))
        rows.append({"name": f"COFFEE_SCRAPER_{name.upper()}", "value": str(value), "default": str(field.default),
                     "description": field.description})  # fmt: skip
    if as_json:
        _print_json(rows)
        return
    table = Table("variable", "value", "default", "meaning")
    for r in rows:
        table.add_row(r["name"], r["value"], r["default"], r["description"])
    out.print(table)


# --- demo -----------------------------------------------------------------------------------------


@app.command()
def demo(
    shops: Annotated[int, typer.Option(help="How many demo shops to serve.")] = 3,
    as_json: JsonOpt = False,
) -> None:
    """Run the main job offline against bundled demo shops on 127.0.0.1, then show the catalog."""
    from coffee_scraper.demo.server import DemoServer, demo_shops

    base = settings()
    s = base.model_copy(update={"allow_private_addresses": True, "request_delay_s": 0.05, "request_jitter_s": 0.02})
    with DemoServer(demo_shops(shops)) as server, database() as factory:
        with db.session_scope(factory) as session:
            names = []
            for shop_name in server.shop_names:
                service.add_roaster(
                    session, f"demo-{shop_name}", server.url(shop_name), platform="auto", update_existing=True
                )
                names.append(f"demo-{shop_name}")
        reports = scrape_roasters(names, "full", as_json=as_json, s=s)
    code = _print_reports(reports, as_json)
    if not as_json:
        out.print("Try: coffee-scraper coffees list --roast light   ·   coffee-scraper coffees show ID")
    raise typer.Exit(code)


# --- serve ----------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8000,
) -> None:
    """Serve the dashboard (/login), /api/v1, /metrics (Prometheus), /health and /health/ready until interrupted."""
    import logging

    import uvicorn

    from coffee_scraper.web import create_app

    s = settings()
    with database():  # migrated to the newest schema first, like every other command
        pass
    from coffee_scraper.incidents.watchdog_commands import prepare_incident_store

    prepare_incident_store(s)  # a separate incident store (COFFEE_SCRAPER_INCIDENTS_DATABASE_URL) is migrated too
    # uvicorn's own messages (startup, errors) go to the app log too; per-request access lines do not
    logging.getLogger("uvicorn").handlers = list(logging.getLogger("coffee_scraper").handlers)
    get_logger("app").info("serve_start", host=host, port=port, database=_masked(s.database_url))
    err.print(
        f"serving the dashboard on http://{host}:{port}/ (API /api/v1, /metrics, /health; Ctrl-C stops)",
        highlight=False,
    )
    try:
        uvicorn.run(create_app(s), host=host, port=port, log_config=None, access_log=False)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc}") from exc
    get_logger("app").info("serve_stop", host=host, port=port)


# --- export ---------------------------------------------------------------------------------------

export_app = typer.Typer(help="Export generated artifacts (Prometheus alerting rules).", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("prometheus-rules")
def export_prometheus_rules(
    out_path: Annotated[
        Path, typer.Option("--out", help="rules.yml to write; rules_test.yml (promtool tests) goes next to it.")
    ] = Path("deploy/prometheus/rules.yml"),
) -> None:
    """Write the runbook's alert rules (incidents/alert_config.py) as Prometheus rules plus their promtool tests."""
    from coffee_scraper.incidents.alert_config import AlertSettings, load_alert_config
    from coffee_scraper.incidents.prometheus_rules import write_files

    alert_settings = AlertSettings()
    rules, tests = write_files(load_alert_config(alert_settings), out_path, job=alert_settings.prometheus_job)
    out.print(f"wrote {rules} and {tests}; check with: promtool test rules {tests}", highlight=False)


@export_app.command("grafana-dashboards")
def export_grafana_dashboards(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for the dashboard JSON files (one per dashboard).")
    ] = Path("deploy/grafana/dashboards"),
) -> None:
    """Write the Grafana dashboards (observability/dashboards.py) as JSON, for Grafana's file provisioning."""
    from coffee_scraper.observability.dashboards import write_dashboards

    for path in write_dashboards(out_dir):
        out.print(f"wrote {path}", highlight=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; runs in progress are marked failed at the next start, committed pages are kept")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
