"""A small Flask API: notes kept in PostgreSQL."""
import os
import socket

import psycopg2
from flask import Flask, jsonify, request

app = Flask(__name__)


def db():
    return psycopg2.connect(os.environ["DATABASE_URL"])


@app.get("/healthz")
def healthz():
    return "ok\n"


@app.get("/api/whoami")
def whoami():
    return jsonify(host=socket.gethostname(), uid=os.getuid())


@app.get("/api/notes")
def notes():
    with db() as conn, conn.cursor() as cur:
        cur.execute("SELECT body FROM notes ORDER BY id")
        return jsonify([row[0] for row in cur.fetchall()])


@app.post("/api/notes")
def add_note():
    with db() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO notes (body) VALUES (%s)", (request.get_data(as_text=True),))
    return "", 201
