"""A small Django project served over ASGI (settings, urls, views, asgi in one package)."""
