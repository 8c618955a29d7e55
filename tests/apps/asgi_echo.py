"""An ASGI echo app for uvicorn: answers with the request it received, as JSON."""

import asyncio
import base64
import json
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/not-modified":
        await send({"type": "http.response.start", "status": 304, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"].startswith("/bytes/"):  # /bytes/N: N bytes of "x"
        size = int(scope["path"].rsplit("/", 1)[1])
        headers = [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"x" * size})
        return
    if scope["path"] == "/stream":  # 5 chunks 300 ms apart, no length (chunked)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for n in range(5):
            await send({"type": "http.response.body", "body": b"chunk%d;" % n, "more_body": True})
            await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b""})
        return
    echo = {
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query": scope["query_string"].decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "body": base64.b64encode(body).decode(),
    }
    payload = json.dumps(echo).encode()
    if os.environ.get("ECHO_LOG"):
        with open(os.environ["ECHO_LOG"], "ab") as log:
            log.write(payload + b"\n")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    status = int(dict(scope["headers"]).get(b"x-echo-status", b"200"))
    headers.append((b"x-echo", b"yes"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
