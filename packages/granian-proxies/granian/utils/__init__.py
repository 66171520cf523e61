"""Helpers for applications served by granian (or any other ASGI, WSGI or RSGI server)."""
