"""Normalizer accuracy against the hand-labelled gold set in tests/gold/ (per field, per store).

Run: ``python -m bench.accuracy [--json] [--show-wrong] [--store NAME]``. Gold labelling rules are
docs/normalization-policy.md; the normalizer itself is coffee_scraper/normalize/.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coffee_scraper.normalize import normalize_product

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLD_DIR = REPO_ROOT / "tests" / "gold"
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"
STORES_DIR = FIXTURES / "stores"

SCALAR_FIELDS = (
    "name_clean",
    "roast_level",
    "process",
    "species",
    "chicory_pct",
    "country",
    "region",
    "estate",
    "altitude_m",
    "decaf",
)
LIST_FIELDS = ("varieties", "tasting_notes")
VARIANT_FIELDS = ("weight_g", "pack_count", "grind", "price_minor", "compare_at_minor", "in_stock")

TARGETS: dict[str, float] = {
    "is_coffee_f1": 0.98,
    "scalar_accuracy": 0.95,
    "list_f1": 0.90,
    "variant_weight_g": 0.99,
    "variant_grind": 0.99,
    "variant_price_minor": 0.99,
    "wrong_pct_max": 1.0,
}

_DASHES = re.compile(r"[\u2010-\u2015\-]")
_WS = re.compile(r"\s+")


def canon(value: Any) -> Any:
    """Comparison form: strings casefolded, whitespace collapsed, dash variants unified."""
    if isinstance(value, str):
        return _WS.sub(" ", _DASHES.sub("-", value.casefold())).strip()
    if isinstance(value, dict):
        return {k: canon(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [canon(v) for v in value]
    return value


@dataclass
class Case:
    """One gold product: where it came from, the raw input and the expected record."""

    store: str
    platform: str
    currency: str | None
    raw: dict[str, Any]
    expected: dict[str, Any]
    note: str = ""


@dataclass
class FieldScore:
    total: int = 0
    correct: int = 0
    filled: int = 0
    correct_filled: int = 0
    gold_filled: int = 0
    wrong: list[str] = field(default_factory=list)

    def add(self, got: Any, exp: Any, label: str) -> None:
        self.total += 1
        g, e = canon(got), canon(exp)
        ok = g == e
        self.correct += ok
        got_filled = got is not None
        self.filled += got_filled
        self.gold_filled += exp is not None
        if got_filled and ok:
            self.correct_filled += 1
        if got_filled and not ok:
            self.wrong.append(f"{label}: got {got!r}, expected {exp!r}")

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 1.0

    @property
    def precision(self) -> float:
        return self.correct_filled / self.filled if self.filled else 1.0

    @property
    def recall(self) -> float:
        return self.correct_filled / self.gold_filled if self.gold_filled else 1.0


@dataclass
class ListScore:
    tp: int = 0
    predicted: int = 0
    gold: int = 0
    wrong: list[str] = field(default_factory=list)

    def add(self, got: list[Any], exp: list[Any], label: str) -> None:
        g = [canon(x) for x in got or []]
        e = [canon(x) for x in exp or []]
        gs, es = set(g), set(e)
        self.tp += len(gs & es)
        self.predicted += len(gs)
        self.gold += len(es)
        extra, missing = sorted(gs - es), sorted(es - gs)
        if extra or missing:
            self.wrong.append(f"{label}: extra {extra}, missing {missing}")

    @property
    def precision(self) -> float:
        return self.tp / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.tp / self.gold if self.gold else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Report:
    stores: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    products: int = 0
    coffee_products: int = 0
    variants: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    is_coffee_wrong: list[str] = field(default_factory=list)
    scalars: dict[str, FieldScore] = field(default_factory=lambda: {f: FieldScore() for f in SCALAR_FIELDS})
    lists: dict[str, ListScore] = field(default_factory=lambda: {f: ListScore() for f in LIST_FIELDS})
    variant_fields: dict[str, FieldScore] = field(default_factory=lambda: {f: FieldScore() for f in VARIANT_FIELDS})
    variant_count_mismatch: list[str] = field(default_factory=list)

    @property
    def is_coffee_f1(self) -> float:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        return 2 * p * r / (p + r) if p + r else 0.0

    def field_scores(self) -> dict[str, float]:
        out = {"is_coffee": self.is_coffee_f1}
        out.update({f: s.accuracy for f, s in self.scalars.items()})
        out.update({f: s.f1 for f, s in self.lists.items()})
        out.update({f"variant.{f}": s.accuracy for f, s in self.variant_fields.items()})
        return out

    @property
    def macro(self) -> float:
        scores = self.field_scores()
        return sum(scores.values()) / len(scores) if scores else 0.0

    def wrong_counts(self) -> tuple[int, int]:
        """(wrong filled values, filled values) over scalar, list-item, variant and is_coffee predictions."""
        wrong = self.fp + self.fn
        filled = self.products
        for s in [*self.scalars.values(), *self.variant_fields.values()]:
            wrong += s.filled - s.correct_filled
            filled += s.filled
        for ls in self.lists.values():
            wrong += ls.predicted - ls.tp
            filled += ls.predicted
        return wrong, filled

    def failures(self) -> list[str]:
        """Targets not met (empty list = all met)."""
        bad = []
        if self.is_coffee_f1 < TARGETS["is_coffee_f1"]:
            bad.append(f"is_coffee F1 {self.is_coffee_f1:.3f} < {TARGETS['is_coffee_f1']}")
        for f, s in self.scalars.items():
            if s.total and s.accuracy < TARGETS["scalar_accuracy"]:
                bad.append(f"{f} accuracy {s.accuracy:.3f} < {TARGETS['scalar_accuracy']}")
        for f, ls in self.lists.items():
            if ls.gold and ls.f1 < TARGETS["list_f1"]:
                bad.append(f"{f} F1 {ls.f1:.3f} < {TARGETS['list_f1']}")
        for f in ("weight_g", "grind", "price_minor"):
            s = self.variant_fields[f]
            if s.total and s.accuracy < TARGETS[f"variant_{f}"]:
                bad.append(f"variant {f} accuracy {s.accuracy:.4f} < {TARGETS[f'variant_{f}']}")
        wrong, filled = self.wrong_counts()
        if filled and 100 * wrong / filled > TARGETS["wrong_pct_max"]:
            bad.append(f"wrong values {wrong}/{filled} = {100 * wrong / filled:.2f}% > {TARGETS['wrong_pct_max']}%")
        return bad

    def to_json(self) -> dict[str, Any]:
        wrong, filled = self.wrong_counts()
        return {
            "stores": self.stores,
            "skipped": self.skipped,
            "products": self.products,
            "coffee_products": self.coffee_products,
            "variants": self.variants,
            "is_coffee": {"f1": self.is_coffee_f1, "tp": self.tp, "fp": self.fp, "fn": self.fn},
            "scalars": {
                f: {
                    "accuracy": s.accuracy,
                    "precision": s.precision,
                    "recall": s.recall,
                    "n": s.total,
                    "wrong": len(s.wrong),
                }
                for f, s in self.scalars.items()
            },
            "lists": {
                f: {"precision": ls.precision, "recall": ls.recall, "f1": ls.f1, "gold_items": ls.gold}
                for f, ls in self.lists.items()
            },
            "variants_fields": {
                f: {"accuracy": s.accuracy, "n": s.total, "wrong": len(s.wrong)} for f, s in self.variant_fields.items()
            },
            "macro": self.macro,
            "wrong": wrong,
            "filled": filled,
            "wrong_pct": 100 * wrong / filled if filled else 0.0,
            "failures": self.failures(),
        }


def load_cases(
    gold_dir: Path = GOLD_DIR, stores_dir: Path = STORES_DIR, only: str | None = None
) -> tuple[list[Case], list[str], list[str]]:
    """(cases, store names used, skip reasons)."""
    cases: list[Case] = []
    used: list[str] = []
    skipped: list[str] = []
    for path in sorted(gold_dir.glob("*.json")):
        name = path.stem
        if only and only != name:
            continue
        gold = json.loads(path.read_text(encoding="utf-8"))
        if "store_file" not in gold:  # products carry their raw JSON (synthetic, held-out)
            for i, item in enumerate(gold.get("products", [])):
                cases.append(
                    Case(
                        name,
                        item["platform"],
                        item.get("currency"),
                        item["raw"],
                        item["expected"],
                        item.get("note", f"#{i}"),
                    )
                )
            used.append(name)
            continue
        store_file = stores_dir / gold["store_file"]
        if not store_file.exists():
            skipped.append(f"{name}: fixture {store_file} absent")
            continue
        dump = json.loads(store_file.read_text(encoding="utf-8"))
        items = dump["products"] if isinstance(dump, dict) else dump
        by_id = {str(p.get("id")): p for p in items if isinstance(p, dict)}
        used.append(name)
        for g in gold["products"]:
            pid = str(g["platform_product_id"])
            if pid not in by_id:
                skipped.append(f"{name}: product {pid} not in fixture")
                continue
            cases.append(Case(name, gold["platform"], gold.get("currency"), by_id[pid], g["expected"]))
    return cases, used, skipped


def evaluate(cases: Iterable[Case]) -> Report:
    rep = Report()
    for case in cases:
        res = normalize_product(case.raw, case.platform, case.currency)  # type: ignore[arg-type]
        got = res.product.model_dump(mode="json")
        exp = case.expected
        label = f"{case.store}/{exp.get('platform_product_id', got['platform_product_id'])} {got['title'][:40]!r}"
        if case.note:
            label += f" [{case.note}]"
        rep.products += 1
        gold_coffee = bool(exp.get("is_coffee"))
        if got["is_coffee"] and gold_coffee:
            rep.tp += 1
        elif got["is_coffee"] and not gold_coffee:
            rep.fp += 1
            rep.is_coffee_wrong.append(f"{label}: predicted coffee")
        elif gold_coffee:
            rep.fn += 1
            rep.is_coffee_wrong.append(f"{label}: missed coffee")
        if gold_coffee:
            rep.coffee_products += 1
            for f in SCALAR_FIELDS:
                if f in exp:
                    rep.scalars[f].add(got.get(f), exp[f], label)
            for f in LIST_FIELDS:
                if f in exp:
                    rep.lists[f].add(got.get(f) or [], exp[f] or [], label)
        gv = {str(v["platform_variant_id"]): v for v in got["variants"]}
        ev = exp.get("variants") or []
        if len(ev) != len(gv):
            rep.variant_count_mismatch.append(f"{label}: {len(gv)} variants, gold {len(ev)}")
        for v in ev:
            vid = str(v["platform_variant_id"])
            mine = gv.get(vid, {})
            rep.variants += 1
            for f in VARIANT_FIELDS:
                if f in v:
                    rep.variant_fields[f].add(mine.get(f), v[f], f"{label} variant {vid} {v.get('title', '')!r}")
    return rep


def _print_table(rep: Report, show_wrong: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(
        f"[bold]Normalizer accuracy[/bold]: stores {', '.join(rep.stores) or '-'}; {rep.products} products "
        f"({rep.coffee_products} coffee), {rep.variants} variants"
    )
    for s in rep.skipped:
        con.print(f"[yellow]skipped[/yellow] {s}")
    t = Table(show_lines=False)
    for col in ("field", "score", "precision", "recall", "n", "wrong"):
        t.add_column(col, justify="right" if col != "field" else "left")
    p = rep.tp / (rep.tp + rep.fp) if rep.tp + rep.fp else 1.0
    r = rep.tp / (rep.tp + rep.fn) if rep.tp + rep.fn else 1.0
    t.add_row(
        "is_coffee (F1)",
        f"{rep.is_coffee_f1:.3f}",
        f"{p:.3f}",
        f"{r:.3f}",
        str(rep.products),
        str(rep.fp + rep.fn),
    )
    for f, s in rep.scalars.items():
        t.add_row(
            f"{f} (acc)",
            f"{s.accuracy:.3f}",
            f"{s.precision:.3f}",
            f"{s.recall:.3f}",
            str(s.total),
            str(len(s.wrong)),
        )
    for f, ls in rep.lists.items():
        t.add_row(
            f"{f} (F1)",
            f"{ls.f1:.3f}",
            f"{ls.precision:.3f}",
            f"{ls.recall:.3f}",
            str(ls.gold),
            str(ls.predicted - ls.tp),
        )
    for f, s in rep.variant_fields.items():
        t.add_row(
            f"variant.{f} (acc)",
            f"{s.accuracy:.4f}",
            f"{s.precision:.3f}",
            f"{s.recall:.3f}",
            str(s.total),
            str(len(s.wrong)),
        )
    con.print(t)
    wrong, filled = rep.wrong_counts()
    con.print(
        f"macro score {rep.macro:.3f}; wrong values {wrong} of {filled} filled "
        f"({100 * wrong / filled if filled else 0:.2f}%)"
    )
    fails = rep.failures()
    con.print("[green]all targets met[/green]" if not fails else "[red]targets missed:[/red] " + "; ".join(fails))
    if show_wrong:
        for line in rep.is_coffee_wrong:
            con.print(f"[red]is_coffee[/red] {line}", markup=False, highlight=False)
        for f, s in [*rep.scalars.items(), *rep.lists.items()]:
            for line in s.wrong:
                con.print(f"[{f}] {line}", markup=False, highlight=False)
        for line in rep.variant_count_mismatch:
            con.print(f"[variants] {line}", markup=False, highlight=False)
        for f, s in rep.variant_fields.items():
            for line in s.wrong[:15]:
                con.print(f"[variant.{f}] {line}", markup=False, highlight=False)
            if len(s.wrong) > 15:
                con.print(f"[variant.{f}] … {len(s.wrong) - 15} more", markup=False)
        # nulls where gold has a value (not "wrong", but missed)
        for f, s in rep.scalars.items():
            missed = s.gold_filled - s.correct_filled - len(s.wrong)
            if missed > 0:
                con.print(f"[{f}] {missed} gold values left null", markup=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__)
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--show-wrong", action="store_true", help="list every wrong value")
    ap.add_argument("--store", help="only this gold file (stem, e.g. rosette-shopify or synthetic)")
    ap.add_argument(
        "--heldout",
        nargs="?",
        const="heldout",
        metavar="SET",
        help="score a held-out set instead (tests/gold/heldout/ or tests/gold/SET/), written without reading "
        "the normalizer; heldout2 is the final measurement and no rule may be tuned on it",
    )
    args = ap.parse_args(argv)
    cases, used, skipped = load_cases(gold_dir=GOLD_DIR / args.heldout if args.heldout else GOLD_DIR, only=args.store)
    rep = evaluate(cases)
    rep.stores, rep.skipped = used, skipped
    if args.json:
        json.dump(rep.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(rep, args.show_wrong)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
