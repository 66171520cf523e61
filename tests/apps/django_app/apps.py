from django.apps import AppConfig

# Initialised once per worker in `ready()`: Django's ASGI handler has no lifespan support.
RESOURCE: dict = {}


class DjangoTestAppConfig(AppConfig):
    name = 'tests.apps.django_app'
    label = 'django_test_app'

    def ready(self):
        RESOURCE.update({'name': 'django-pool', 'ready': True})
