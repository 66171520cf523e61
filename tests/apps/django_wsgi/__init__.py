"""A small Django project served over WSGI (settings, urls, views, wsgi in one package)."""
