from .common import Granian

__all__ = ['Granian']
