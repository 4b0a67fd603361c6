#!/usr/bin/env python3
"""dns-01 hook used by the tests: publish/remove the TXT record in pebble-challtestsrv.

argv: dns_hook.py set|clear MANAGEMENT_URL. The record comes from the environment exactly as the
renewer passes it (CERTLOOP_DNS_RECORD_NAME / CERTLOOP_DNS_RECORD_VALUE); each call is appended to
$CERTLOOP_HOOK_LOG (when set) so tests can assert what the hook saw.
"""

import json
import os
import sys
import urllib.request

action, url = sys.argv[1], sys.argv[2]
name = os.environ["CERTLOOP_DNS_RECORD_NAME"] + "."
value = os.environ.get("CERTLOOP_DNS_RECORD_VALUE", "")
body = {"host": name, "value": value} if action == "set" else {"host": name}
endpoint = "/set-txt" if action == "set" else "/clear-txt"
req = urllib.request.Request(url + endpoint, data=json.dumps(body).encode(), method="POST")
with urllib.request.urlopen(req, timeout=5) as resp:  # loopback test peer
    resp.read()
log = os.environ.get("CERTLOOP_HOOK_LOG")
if log:
    with open(log, "a") as fh:
        fh.write(json.dumps({"action": action, "argv": sys.argv[1:], "name": name, "value": value}) + "\n")
