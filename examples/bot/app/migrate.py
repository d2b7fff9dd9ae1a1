"""Migrations: create the schema, and record each run (so a test can count them)."""
import os
import sys

import psycopg2

if os.environ.get("FAIL_MIGRATION"):
    sys.exit("migration 002 failed: column `chat_id` already exists")

with psycopg2.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
    cur.execute("CREATE TABLE IF NOT EXISTS migration_runs (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
    cur.execute("CREATE TABLE IF NOT EXISTS messages (id serial PRIMARY KEY, chat_id bigint NOT NULL, body text NOT NULL)")
    cur.execute("INSERT INTO migration_runs DEFAULT VALUES")
print("migrations applied")
