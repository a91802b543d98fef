"""The web portal: pages rendered on the server from the same services as the REST API.

Sign-in takes an API token once and keeps it in an HTTP-only, SameSite session cookie; every
page declares its permission like an API route and the same check applies. Every form
carries a CSRF token. Charts draw from the same history and time-series queries as the API,
with Chart.js served from ``api/static/vendor`` (no CDN: the portal works offline).
"""
