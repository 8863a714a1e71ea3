"""The plane's observability: Prometheus discovery and scrape config, the built-in dashboard."""
