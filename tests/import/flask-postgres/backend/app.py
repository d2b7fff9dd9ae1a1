"""Notes in PostgreSQL: GET /notes lists them, POST /notes adds the body."""
import os

import psycopg2
from flask import Flask, jsonify, request

app = Flask(__name__)


def db():
    return psycopg2.connect(os.environ["DATABASE_URL"])


@app.get("/health")
def health():
    return "ok\n"


@app.get("/notes")
def notes():
    with db() as conn, conn.cursor() as cur:
        cur.execute("SELECT body FROM notes ORDER BY id")
        return jsonify([row[0] for row in cur.fetchall()])


@app.post("/notes")
def add():
    with db() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO notes (body) VALUES (%s)", (request.get_data(as_text=True),))
    return "", 201
