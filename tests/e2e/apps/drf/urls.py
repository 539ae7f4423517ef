from django.urls import path

import views

urlpatterns = [
    path("api/leads/", views.leads),
    path("api/market/overview", views.market_overview),
    path("api/big", views.big),
    path("api/empty", views.empty),
    path("api/etag", views.etag),
    path("api/redirect", views.redirect),
    path("api/headers", views.headers),
    path("api/drf-throttled/", views.drf_throttled),
    path("api/stats", views.stats),
]
