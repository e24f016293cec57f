"""One module per resource: webhooks, health, metrics."""
