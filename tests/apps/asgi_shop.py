"""A small shop for session tests, as an ASGI app for uvicorn: log in for a token, list
items with it, pay for one. Each answer depends on what the earlier ones gave, so a
session that did not carry its captured values over fails at the server.

    POST /login {"user": U}      200 {"token": "t-U"} (U "broken": a token with a line
                                 break); 401 for an empty user; with ?once, 409 for a
                                 user who logged in before (with ?once too)
    GET  /items (Bearer t-U)     200 {"items": [{"id": 7}, {"id": 8}], "user": U},
                                 header X-Cart: cart-U; 401 without the token
    POST /pay/ID (Bearer t-U)    200 {"paid": ID} for {"cart": "cart-U"}; 400 otherwise
    GET  /slow                   200 after 300 ms
"""

import asyncio
import json

_ONCE: set[str] = set()  # the users who logged in with ?once


async def _body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _answer(send, status: int, document: object, headers=()) -> None:
    body = json.dumps(document).encode()
    fields = [(b"content-type", b"application/json"), *headers]
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})


def _user(scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization" and value.startswith(b"Bearer t-"):
            return value[len(b"Bearer t-") :].decode()
    return None


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = await _body(receive)
    path = scope["path"]
    if path == "/login" and scope["method"] == "POST":
        user = json.loads(body or b"{}").get("user", "")
        if not user:
            return await _answer(send, 401, {"error": "who are you?"})
        if scope["query_string"] == b"once":
            if user in _ONCE:
                return await _answer(send, 409, {"error": f"{user} logged in already"})
            _ONCE.add(user)
        token = "t-a\nb" if user == "broken" else f"t-{user}"
        return await _answer(send, 200, {"token": token})
    if path == "/slow":
        await asyncio.sleep(0.3)
        return await _answer(send, 200, {})
    user = _user(scope)
    if user is None:
        return await _answer(send, 401, {"error": "log in first"})
    if path == "/items":
        cart = [(b"x-cart", f"cart-{user}".encode())]
        return await _answer(send, 200, {"items": [{"id": 7}, {"id": 8}], "user": user}, cart)
    if path.startswith("/pay/") and scope["method"] == "POST":
        if json.loads(body or b"{}").get("cart") != f"cart-{user}":
            return await _answer(send, 400, {"error": "not your cart"})
        return await _answer(send, 200, {"paid": int(path.rsplit("/", 1)[1])})
    return await _answer(send, 404, {})
