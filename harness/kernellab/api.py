"""The guest's dockerd over TLS, with the standard library: enough to wait for it and ask what it has."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from pathlib import Path
from typing import Any


class Api:
    def __init__(self, port: int, certs: Path):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        self.ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # as docker-py (urllib3 2) checks it
        self.ctx.load_cert_chain(str(certs / "cert.pem"), str(certs / "key.pem"))

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def info(self) -> dict[str, Any]:
        status, body = self.get("/info")
        if status != 200:
            raise OSError(f"/info answered {status}")
        return json.loads(body)

    def has_image(self, ref: str) -> bool:
        return self.get(f"/images/{urllib.parse.quote(ref, safe='')}/json")[0] == 200
