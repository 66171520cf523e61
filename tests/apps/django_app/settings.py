SECRET_KEY = 'tests-only-not-a-secret'
DEBUG = False
ALLOWED_HOSTS = ['*']
ROOT_URLCONF = 'tests.apps.django_app.urls'
INSTALLED_APPS = ['tests.apps.django_app.apps.DjangoTestAppConfig']
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'
# The body tests send a few MiB in one request.
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024
