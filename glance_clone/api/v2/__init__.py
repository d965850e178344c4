"""glance-api's v2 Image API: routes, request bodies, list queries, views."""
