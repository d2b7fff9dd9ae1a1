"""A backend that says which replica answered, and counts hits in PostgreSQL."""
import os
import socket

import psycopg2
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/healthz")
def healthz():
    return "ok\n"


@app.get("/whoami")
def whoami():
    with psycopg2.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS hits (id serial PRIMARY KEY, replica text NOT NULL)")
        cur.execute("INSERT INTO hits (replica) VALUES (%s)", (socket.gethostname(),))
    return jsonify(replica=socket.gethostname(), uid=os.getuid())
