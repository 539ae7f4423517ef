"""A tiny Django REST framework project that sluice's e2e tests run under
gunicorn (tests/e2e/test_drf.py): the settings an app behind sluice needs
(docs/backends.md), and no database."""

import os

SECRET_KEY = "sluice-e2e-not-a-secret"
DEBUG = False
# sluice passes the client's Host (upstreams.X.host: client): the public names.
ALLOWED_HOSTS = ["api.example.test", "127.0.0.1", "localhost"]
# Behind sluice the public host is in X-Forwarded-Host and the scheme in
# X-Forwarded-Proto (sluice sets both and drops what a client sent).
USE_X_FORWARDED_HOST = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

ROOT_URLCONF = "urls"
WSGI_APPLICATION = "wsgi.application"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES = {}
USE_TZ = True
APPEND_SLASH = False
# The uploads of the tests are read as a stream; request.body would refuse
# bodies beyond this (Django's default is 2.5 MB).
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024

# DRF's throttle counts in the cache: a file cache, shared by gunicorn's workers.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                      "LOCATION": os.path.join(os.environ.get("APP_STATE_DIR", "/tmp"),
                                               "cache")}}
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    # Only /api/drf-throttled/ throttles (to compare DRF's 429 with sluice's).
    "DEFAULT_THROTTLE_RATES": {"anon": "1/min"},
}
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"stderr": {"class": "logging.StreamHandler"}},
           "root": {"handlers": ["stderr"], "level": "WARNING"}}
