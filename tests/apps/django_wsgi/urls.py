from django.urls import path

from . import views

urlpatterns = [
    path('json', views.json_view),
    path('items/<int:item_id>', views.item),
    path('form', views.form),
    path('stream', views.stream),
    path('download', views.download),
    path('error', views.error),
]
