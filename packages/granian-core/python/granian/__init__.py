# Other granian-* distributions add modules to this package (granian.rsgi, granian.cli...).
__path__ = __import__('pkgutil').extend_path(__path__, __name__)

from ._granian import __version__
from ._loops import loops
from .server import Granian

__all__ = ['Granian', '__version__', 'loops']
