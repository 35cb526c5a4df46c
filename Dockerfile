# coffee-scraper image: `docker build -t coffee-scraper .`; run with deploy/docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COFFEE_SCRAPER_LOG_DIR=/var/log/coffee-scraper

WORKDIR /app

# Only what `pip install .` needs (see .dockerignore); dependencies come from pyproject.toml.
COPY pyproject.toml README.md ./
COPY coffee_scraper ./coffee_scraper
RUN pip install . \
    && rm -rf /app/coffee_scraper /app/build /app/*.egg-info

# Non-root user; /app/data holds the default SQLite catalog, /var/log/coffee-scraper the log files.
RUN groupadd --system --gid 10001 coffee \
    && useradd --system --uid 10001 --gid coffee --home-dir /app --shell /usr/sbin/nologin coffee \
    && mkdir -p /app/data /var/log/coffee-scraper \
    && chown -R coffee:coffee /app /var/log/coffee-scraper
USER coffee

EXPOSE 8000
VOLUME ["/app/data", "/var/log/coffee-scraper"]

# /health answers 200 while the process serves; no curl in the slim image, so Python does the request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

ENTRYPOINT ["coffee-scraper"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
