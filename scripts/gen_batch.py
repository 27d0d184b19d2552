#!/usr/bin/env python3
"""Writes a mixed One API request of N messages (text, templates with header/body/button
parameters, locations, contacts, media captions) to stdout. Usage: gen_batch.py N [--compact]
(written message by message: any N in little memory)"""
import json, sys

def message(i):
    base = {"channel": "whatsapp", "to": f"2779{i:07d}", "clientMessageId": f"c{i}"}
    k = i % 5
    if k == 0:
        base["content"] = f"Dear customer, your statement for account ****{i % 10000:04d} is ready. Balance R{i * 13}.{i % 100:02d}"
    elif k == 1:
        base["template"] = {"templateName": "payment_alert", "header": {"type": "text", "text": {"parameters": {"1": "November 2026"}}},
                            "body": {"parameters": {"1": f"R{i}.00", "2": f"{i % 10000:04d}"}},
                            "buttons": {"websiteUrl": [{"listPosition": 1, "parameters": {"1": f"accounts/{i}"}}]}}
    elif k == 2:
        base["location"] = {"longitude": "18.635891216806", "latitude": "-33.881037287485", "name": "Branch", "address": "100 Edward Street, Bellville 7530"}
    elif k == 3:
        base["contacts"] = [{"name": {"firstName": "John", "formattedName": "John Smith", "lastName": "Smith"},
                             "phones": [{"phone": "+1 (940) 555-1234", "type": "HOME"}], "emails": [{"email": "john@example.com", "type": "WORK"}]}]
    else:
        base["media"] = {"fileId": f"{i:08x}-8a51-4413-a134-928c2b085d31.pdf", "caption": "Your policy schedule"}
    return base

n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
# --compact: no spaces, as oneseal writes (so a round trip can be compared byte for byte).
seps = (",", ":") if "--compact" in sys.argv else None
out = sys.stdout
out.write('{"messages": [' if seps is None else '{"messages":[')
for i in range(n):
    if i:
        out.write(", " if seps is None else ",")
    json.dump(message(i), out, separators=seps)
out.write("]}")
