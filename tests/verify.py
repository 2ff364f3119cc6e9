"""Verifies one received webhook with the receivers' real libraries.

stdin: {"secret": "whsec_...", "headers": {...}, "body": "..."}; exit 0 when both the
`standardwebhooks` and the `svix` libraries accept it, else print why and exit 1.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook

msg = json.load(sys.stdin)
headers = {k.lower(): v for k, v in msg["headers"].items()}
try:
    StandardWebhook(msg["secret"]).verify(msg["body"], headers)
except Exception as e:  # noqa: BLE001 - report any refusal
    print(f"standardwebhooks refused: {e!r}")
    sys.exit(1)
try:
    SvixWebhook(msg["secret"]).verify(msg["body"], headers)
except Exception as e:  # noqa: BLE001
    print(f"svix refused: {e!r}")
    sys.exit(1)
print("ok")
