#!/usr/bin/env python3
"""A registry that misbehaves on purpose, on 127.0.0.1, for the tests and
scripts/bench-bounds: each repository name is one way a registry can try to
exhaust, hang or fool a client, or to collect credentials. It listens on two
ports (the second is "another host": a token service elsewhere) and prints
both, one per line. GET /seen answers what Authorization headers came, by
path. Runs until killed."""

import hashlib
import json
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN = []
CHUNK = b"a" * 65536
SCRIPT = b"#!/bin/sh\necho owned > /tmp/owned\n"
ESCAPE = "app\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J"


def manifest(layer_digest, layer_size, name="app"):
    return {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [{"mediaType": "application/wasm", "digest": layer_digest, "size": layer_size}],
        "annotations": {
            "dev.provision.plugin.name": name,
            "org.opencontainers.image.version": "0.1.0",
            "dev.provision.contract": "0.4.0",
        },
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, value, headers=()):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, val in headers:
            self.send_header(key, val)
        self.end_headers()
        self.wfile.write(body)

    def endless(self, prefix):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            self.wfile.write(prefix)
            while True:
                self.wfile.write(CHUNK)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        SEEN.append({"port": self.server.server_address[1], "path": self.path, "authorization": self.headers.get("Authorization")})
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts == ["seen"]:
            return self.send_json(200, SEEN)
        if parts[0] == "token":
            return self.send_json(200, {"token": "t0ken"})
        if parts[0] != "v2" or len(parts) < 4:
            return self.send_json(404, {"errors": [{"code": "NAME_UNKNOWN"}]})
        repo, kind = parts[1], parts[2]
        tags = {"tags": ["0.1.0"]}
        if repo == "silent":
            time.sleep(3600)
            return
        if repo == "basic" and not self.headers.get("Authorization"):
            return self.send_json(401, {}, [("WWW-Authenticate", 'Basic realm="fake"')])
        if repo == "bearer-http" and not self.headers.get("Authorization"):
            return self.send_json(401, {}, [("WWW-Authenticate", 'Bearer realm="http://192.0.2.1/token",service="fake"')])
        if repo == "bearer-elsewhere" and not self.headers.get("Authorization"):
            realm = f"http://127.0.0.1:{self.server.other_port}/token"
            return self.send_json(401, {}, [("WWW-Authenticate", f'Bearer realm="{realm}",service="fake"')])
        if kind == "tags":
            if repo == "endless-tags":
                return self.endless(b'{"tags":["0.1.0","')
            return self.send_json(200, tags)
        if kind == "manifests":
            if repo == "endless-manifest":
                return self.endless(b'{"schemaVersion":2,"x":"')
            if repo == "huge-layer":
                return self.send_json(200, manifest("sha256:" + "b" * 64, 512 << 20))
            if repo == "lying-layer":
                return self.send_json(200, manifest("sha256:" + "c" * 64, 1000))
            if repo == "script":
                return self.send_json(200, manifest("sha256:" + hashlib.sha256(SCRIPT).hexdigest(), len(SCRIPT)))
            if repo == "escape":
                return self.send_json(200, manifest("sha256:" + "d" * 64, 1000, ESCAPE))
            return self.send_json(200, manifest("sha256:" + "e" * 64, 1000))
        if kind == "blobs":
            if repo == "lying-layer":
                return self.endless(b"\0asm")
            if repo == "script":
                self.send_response(200)
                self.send_header("Content-Length", str(len(SCRIPT)))
                self.end_headers()
                self.wfile.write(SCRIPT)
                return
        return self.send_json(404, {"errors": [{"code": "BLOB_UNKNOWN"}]})


class Server(ThreadingHTTPServer):
    daemon_threads = True


def main():
    first = Server(("127.0.0.1", 0), Handler)
    second = Server(("127.0.0.1", 0), Handler)
    first.other_port = second.server_address[1]
    second.other_port = first.server_address[1]
    for server in (first, second):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(first.server_address[1], flush=True)
    print(second.server_address[1], flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
