"""Demo shops for `coffee-scraper demo`, end-to-end tests and benchmarks: generated catalogs, loopback server.

Nothing here is used when scraping real shops; the scraper talks to these shops only through their URLs.
"""

from coffee_scraper.demo.catalog import (
    ProductFacts,
    make_shopify_catalog,
    make_shopify_products,
    make_woocommerce_catalog,
    make_woocommerce_products,
    mutate_prices,
    remove_products,
)
from coffee_scraper.demo.server import DemoServer, DemoShop, Fault, RequestRecord, demo_shops, max_concurrency

__all__ = [
    "DemoServer",
    "DemoShop",
    "Fault",
    "ProductFacts",
    "RequestRecord",
    "demo_shops",
    "make_shopify_catalog",
    "make_shopify_products",
    "make_woocommerce_catalog",
    "make_woocommerce_products",
    "max_concurrency",
    "mutate_prices",
    "remove_products",
]
