"""An API that says which environment it runs in and what its database keeps."""
import os

import psycopg2
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/healthz")
def healthz():
    return "ok\n"


@app.get("/env")
def env():
    with psycopg2.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SHOW fsync")
        fsync = cur.fetchone()[0]
    return jsonify(env=os.environ["APP_ENV"], fsync=fsync)
