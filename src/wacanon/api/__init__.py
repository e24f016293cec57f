"""The HTTP service: ``create_app(settings)`` builds it; routes live one module per resource."""
