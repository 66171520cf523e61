from django.urls import path

from . import views

urlpatterns = [
    path('json', views.json_view),
    path('items/<int:item_id>', views.item),
    path('echo', views.echo),
    path('stream', views.stream),
    path('upload', views.upload),
    path('error', views.error),
]
