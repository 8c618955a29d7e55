"""A small WSGI app for gunicorn in the client conformance tests (gunicorn is the server)."""

BIG = b"x" * 1_048_576


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/ok":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]
    if path == "/big":
        start_response("200 OK", [("Content-Length", str(len(BIG)))])
        return [BIG]
    if path == "/stream":  # no length: gunicorn frames it (chunked on HTTP/1.1, or by closing)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"abc", b"defg", b"hij"])
    if path == "/empty":
        start_response("204 No Content", [])
        return [b""]
    if path == "/redirect":
        start_response("302 Found", [("Location", "/ok"), ("Content-Length", "0")])
        return [b""]
    start_response("404 Not Found", [("Content-Length", "0")])
    return [b""]
