"""A small shop for session tests, an aiohttp application: log in for a token, list
items with it, pay for one. Each answer depends on what the earlier ones gave, so a
session that did not carry its captured values over fails at the server.

    POST /login {"user": U}      200 {"token": "t-U"} (U "broken": a token with a line
                                 break); 401 for an empty user; with ?once, 409 for a
                                 user who logged in before (with ?once too)
    GET  /items (Bearer t-U)     200 {"items": [{"id": 7}, {"id": 8}], "user": U},
                                 header X-Cart: cart-U; 401 without the token
    POST /pay/ID (Bearer t-U)    200 {"paid": ID} for {"cart": "cart-U"}; 400 otherwise
    GET  /slow                   200 after 300 ms

    python aiohttp_shop.py FD    serve on the listening socket FD, then print "serving"
"""

import asyncio
import json
import socket
import sys

from aiohttp import web

ONCE = web.AppKey("once", set)  # the users who logged in with ?once


async def _document(request: web.Request) -> dict:
    body = await request.read()
    return json.loads(body or b"{}")


def _user(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    return value[len("Bearer t-") :] if value.startswith("Bearer t-") else None


async def login(request: web.Request) -> web.Response:
    user = (await _document(request)).get("user", "")
    if not user:
        return web.json_response({"error": "who are you?"}, status=401)
    if request.query_string == "once":
        if user in request.app[ONCE]:
            return web.json_response({"error": f"{user} logged in already"}, status=409)
        request.app[ONCE].add(user)
    return web.json_response({"token": "t-a\nb" if user == "broken" else f"t-{user}"})


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(0.3)
    return web.json_response({})


async def items(request: web.Request) -> web.Response:
    user = _user(request)
    if user is None:
        return web.json_response({"error": "log in first"}, status=401)
    document = {"items": [{"id": 7}, {"id": 8}], "user": user}
    return web.json_response(document, headers={"X-Cart": f"cart-{user}"})


async def pay(request: web.Request) -> web.Response:
    user = _user(request)
    if user is None:
        return web.json_response({"error": "log in first"}, status=401)
    if (await _document(request)).get("cart") != f"cart-{user}":
        return web.json_response({"error": "not your cart"}, status=400)
    return web.json_response({"paid": int(request.match_info["item"])})


def make_app() -> web.Application:
    app = web.Application()
    app[ONCE] = set()
    app.router.add_post("/login", login)
    app.router.add_get("/slow", slow)
    app.router.add_get("/items", items)
    app.router.add_post(r"/pay/{item:\d+}", pay)
    return app


if __name__ == "__main__":
    listening = socket.socket(fileno=int(sys.argv[1]))
    web.run_app(make_app(), sock=listening, print=lambda _: print("serving", flush=True))
