"""Counts visits in Redis, retrying while Redis starts (as the tutorial's does)."""
import time

import redis
from flask import Flask

app = Flask(__name__)
cache = redis.Redis(host="redis", port=6379)


def hits():
    for attempt in range(50):
        try:
            return cache.incr("hits")
        except redis.exceptions.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("redis did not answer")


@app.route("/")
def hello():
    return f"Hello World! I have been seen {hits()} times.\n"
