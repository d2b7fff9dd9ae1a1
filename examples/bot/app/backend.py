"""The bot's backend: messages in PostgreSQL, over HTTP."""
import os

import psycopg2
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/healthz")
def healthz():
    return "ok\n"


@app.post("/messages")
def add():
    with psycopg2.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO messages (chat_id, body) VALUES (%s, %s)", (request.json["chat_id"], request.json["body"]))
    return "", 201


@app.get("/messages")
def messages():
    with psycopg2.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT chat_id, body FROM messages ORDER BY id")
        return jsonify(cur.fetchall())
