"""The bot: a stand-in for a Telegram poller that hands updates to the backend."""
import json
import os
import time
import urllib.request

backend = os.environ["BACKEND_URL"]
body = json.dumps({"chat_id": 42, "body": "bot started"}).encode()
request = urllib.request.Request(f"{backend}/messages", data=body, headers={"Content-Type": "application/json"})
urllib.request.urlopen(request, timeout=5)
print("bot started; polling", flush=True)
while True:
    time.sleep(5)
