"""An AWS Lambda function behind an API Gateway or Function URL: receives the platform's
encrypted callbacks, decrypts them with oneseal, and hands the plaintext to your code.

The engine is made once per execution environment (outside the handler), so warm
invocations reuse its key cache: one KMS Decrypt per distinct data key per environment.

Packaging (x86_64, Python 3.12 runtime; the wheel is abi3, any CPython >= 3.9):

    pip install maturin && maturin build --release -m bindings/python/Cargo.toml -o dist
    mkdir -p build && pip install --target build dist/oneseal-*.whl
    cp bindings/python/examples/lambda_callback_handler.py build/
    (cd build && zip -r ../function.zip .)
    aws lambda create-function --function-name whatsapp-callbacks --runtime python3.12 \\
        --handler lambda_callback_handler.handler --zip-file fileb://function.zip \\
        --role arn:aws:iam::111122223333:role/whatsapp-callbacks   # kms:Decrypt on the key

Build the wheel on Amazon Linux 2023 (or in its container) so it links the same glibc as the
runtime. Set CALLBACK_PASSWORD in the function's environment (from Secrets Manager) and the
same basic-auth credentials in the platform portal.
"""

import base64
import hmac
import json
import os

import oneseal

ENGINE = oneseal.Engine()  # KMS from the function's role; no key id needed to decrypt


def authorized(headers):
    want = "Basic " + base64.b64encode(
        f"clickatell:{os.environ['CALLBACK_PASSWORD']}".encode()
    ).decode()
    got = (headers or {}).get("authorization") or (headers or {}).get("Authorization") or ""
    return hmac.compare_digest(got.encode(), want.encode())


def handle(callback):
    """Your code: `callback` is the plaintext One API or legacy callback."""
    print(json.dumps({"received": list(callback.get("event", {}).keys())}))


def handler(event, context):
    if not authorized(event.get("headers")):
        return {"statusCode": 401, "body": ""}
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    try:
        callback = json.loads(ENGINE.decrypt(body))
    except oneseal.KeyServiceError:
        # Passing (throttled, unreachable): a 5xx makes the platform retry.
        return {"statusCode": 503, "body": ""}
    except oneseal.Error as e:
        # Never decryptable, so a retry cannot help: its body (ciphertext only) goes to the
        # log as the dead letter, to replay by hand once the cause is fixed.
        print(json.dumps({"dead_letter": type(e).__name__, "path": e.path, "body": body if isinstance(body, str) else body.decode("utf-8", "replace")}))
        return {"statusCode": 200, "body": ""}
    handle(callback)
    return {"statusCode": 200, "body": ""}
